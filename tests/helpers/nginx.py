"""NGINX scaffolding shared by the unit and program tests: the rendered site and a parser that
reads it as NGINX tokenizes it; a throwaway NGINX prefix (certificates, main conf) checked with
`nginx -t`; real NGINX in a private network namespace in front of stand-in nodes (`run_nodes`);
and what `nginx -T` prints for a site installed by Mattermost's Ubuntu guide (`guide_capture`), or
for any live sites (`capture`, with the guide's and the lab's plain sites, `guide` and `plain`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from components import nginx_live
from components.nginx_render import Backend, ProxyPaths, proxy_paths, render_nginx_site, render_transition_site
from lab import seeding
from tests.helpers.certs import make_ca, make_leaf, pem

ROOT = Path(__file__).resolve().parents[2]
SERVER = "mattermost.example.com"
UPSTREAM = "mattermost-app.internal"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
IS_ROOT = os.geteuid() == 0
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx not installed (apt-get install nginx-light)")
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root")


def site(paths: ProxyPaths | None = None, backends: list[Backend] | None = None, keepalive: int = 32) -> str:
    return render_nginx_site(
        server_name=SERVER,
        backends=backends or [Backend("10.251.0.101", 8065), Backend("10.251.0.102", 8065)],
        upstream_name=UPSTREAM,
        keepalive=keepalive,
        paths=paths or proxy_paths("/etc/nginx/mattermost-tls"),
    )


class Block:
    def __init__(self, name: str, args: list[str]):
        self.name, self.args = name, args
        self.directives: list[tuple[str, list[str]]] = []
        self.children: list[Block] = []

    def get(self, name: str) -> list[list[str]]:
        return [a for n, a in self.directives if n == name]

    def one(self, name: str) -> str:
        vals = self.get(name)
        assert len(vals) == 1, f"{self.name} {self.args}: {name} appears {len(vals)} times"
        return " ".join(vals[0])

    def walk(self):  # type: ignore[no-untyped-def]
        yield self
        for c in self.children:
            yield from c.walk()


def tokenize(text: str) -> list[str]:
    tokens, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            i = text.index("\n", i) if "\n" in text[i:] else len(text)
        elif c in "{};":
            tokens.append(c)
            i += 1
        elif c in "\"'":
            j = text.index(c, i + 1)
            tokens.append(text[i + 1 : j])
            i = j + 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "{};":
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


def parse(text: str) -> Block:
    root = Block("main", [])
    stack, words = [root], []  # type: ignore[var-annotated]
    for t in tokenize(text):
        if t == ";":
            stack[-1].directives.append((words[0], words[1:]))
            words = []
        elif t == "{":
            b = Block(words[0], words[1:])
            stack[-1].children.append(b)
            stack.append(b)
            words = []
        elif t == "}":
            assert not words, f"dangling words {words}"
            stack.pop()
        else:
            words.append(t)
    assert len(stack) == 1 and not words, "unbalanced braces"
    return root


def nginx_tree(d: Path, backends: list[Backend] | None = None) -> tuple[ProxyPaths, Path, tuple]:  # type: ignore[type-arg]
    """A throwaway NGINX prefix: main conf including the rendered site, public cert + key, CA."""
    ca = make_ca()
    paths = proxy_paths(str(d / "tls"))
    (d / "tls").mkdir(parents=True)
    cert, key = make_leaf(ca, [SERVER, "127.0.0.1"])
    Path(paths.cert).write_text(cert)
    Path(paths.key).write_text(key)
    Path(paths.ca).write_text(pem(ca[1]))
    for t in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / t).mkdir()
    (d / "site.conf").write_text(site(paths, backends=backends))
    main = d / "nginx.conf"
    main.write_text(
        f"pid {d}/nginx.pid;\nerror_log {d}/error.log;\n"
        "events { worker_connections 64; }\n"
        "http {\n  access_log off;\n"
        f"  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n"
        f"  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n"
        f"  include {d}/site.conf;\n}}\n"
    )
    return paths, main, ca


def nginx_t(d: Path, main: Path) -> subprocess.CompletedProcess[str]:
    assert NGINX
    return subprocess.run(
        [NGINX, "-t", "-p", str(d), "-c", str(main), "-e", str(d / "error.log")], capture_output=True, text=True
    )


# A stand-in web listener (lab/standin) on ADDRESS, plain or TLS; "tls-late" drops its first
# connection unanswered: a node whose TLS listener comes up between NGINX's two attempts.
NODE = r"""
import signal, sys
sys.path.insert(0, sys.argv[7])
from lab.standin.mmstandin import web
from lab.standin.mmstandin.config import Config
from lab.standin.mmstandin.runtime import Context, Logger
addr, mode, cert, key, ready, log = sys.argv[1:7]
svc = {"ListenAddress": addr, "ConnectionSecurity": "TLS" if mode.startswith("tls") else ""}
if mode.startswith("tls"):
    svc.update(TLSCertFile=cert, TLSKeyFile=key)
if mode == "tls-late":
    serve, dropped = web._Server.finish_request, []
    def finish_request(self, request, client_address):
        if not dropped:
            dropped.append(1)
            return
        serve(self, request, client_address)
    web._Server.finish_request = finish_request
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
w = web.Web(Context(config=Config(path="-", data={"ServiceSettings": svc}), log=Logger("debug", stream=open(log, "a"))))
w.start()
open(ready, "w").close()
signal.sigwait({signal.SIGTERM})
w.stop()
"""

# Runs inside `unshare --net` (only loopback, nothing leaves the machine): node i listens on
# 127.0.0.(i+1):8065; steps start/stop nodes, start NGINX and send requests through it. Prints one
# JSON line per request: status, body, and how many pings each node has served so far, per mode
# ("1-plain", "1-tls", ...; "tls-late" counts as "tls-late").
DRIVER = r"""
import http.client, json, os, socket, ssl, subprocess, sys, time
d, root, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
procs = {}
def start(i, mode):
    ready = f"{d}/ready{i}"
    if os.path.exists(ready):
        os.unlink(ready)
    procs[i] = subprocess.Popen([sys.executable, f"{d}/node.py", f"127.0.0.{i + 1}:8065", mode,
                                 f"{d}/node.crt", f"{d}/node.key", ready, f"{d}/node{i}-{mode}.log", root])
    for _ in range(1000):
        if os.path.exists(ready):
            return
        time.sleep(0.01)
    raise SystemExit(f"node {i} did not start")
def stop(i):
    p = procs.pop(i)
    p.terminate()
    p.wait(10)
ctx = ssl.create_default_context(cafile=f"{d}/tls/ca.crt")
def get(path, headers):
    c = http.client.HTTPSConnection("127.0.0.1", 443, timeout=30)
    c.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", 443), 30), server_hostname=SERVER)
    c.request("GET", path, headers={"Host": SERVER, **headers})
    r = c.getresponse()
    body = r.read().decode(errors="replace")
    c.close()
    return r.status, body
def served():
    out = {}
    for i in (1, 2, 3):
        for mode in ("plain", "tls"):
            log = f"{d}/node{i}-{mode}.log"
            lines = open(log).read().splitlines() if os.path.exists(log) else []
            out[f"{i}-{mode}"] = sum(1 for line in lines if "GET /api/v4/system/ping " in line)
    return out
try:
    for step in steps:
        if step[0] == "start":
            start(step[1], step[2])
        elif step[0] == "stop":
            stop(step[1])
        elif step[0] == "nginx":
            subprocess.run(["nginx", "-p", d, "-c", f"{d}/nginx.conf", "-e", f"{d}/error.log"], check=True)
        elif step[0] == "get":
            status, body = get(step[1], step[2] if len(step) > 2 else {})
            print(json.dumps({"status": status, "body": body, "served": served()}), flush=True)
finally:
    for i in list(procs):
        stop(i)
    if os.path.exists(f"{d}/nginx.pid"):
        subprocess.run(["kill", open(f"{d}/nginx.pid").read().strip()])
""".replace("SERVER", repr(SERVER))


PING = ["get", "/api/v4/system/ping"]
needs_netns = pytest.mark.skipif(
    not shutil.which("unshare") or not shutil.which("ip"), reason="needs unshare and ip (util-linux, iproute2)"
)


def run_nodes(
    tmp_path: Path,
    nodes: list[int],
    steps: list[list[object]],
    site_edit: str | None = None,
    site: Callable[[ProxyPaths, Path], str] | None = None,
) -> list[dict]:  # type: ignore[type-arg]
    """NGINX with the transitional site for nodes 127.0.0.(i+1):8065 (or `site(paths, dir)`: another
    transitional site, e.g. nginx_live's version of an admin's site), then `steps`."""
    paths, _, ca = nginx_tree(tmp_path, backends=[Backend(f"127.0.0.{i + 1}", 8065) for i in nodes])
    if site is not None:
        site_text = site(paths, tmp_path)
    else:
        site_text = render_transition_site(
            server_name=SERVER,
            backends=[Backend(f"127.0.0.{i + 1}", 8065) for i in nodes],
            upstream_name=UPSTREAM,
            keepalive=32,
            paths=paths,
        )
    (tmp_path / "site.conf").write_text(re.sub(site_edit, "", site_text) if site_edit else site_text)
    cert, key = make_leaf(ca, ["mm", UPSTREAM])
    (tmp_path / "node.crt").write_text(cert)
    (tmp_path / "node.key").write_text(key)
    (tmp_path / "node.py").write_text(NODE)
    (tmp_path / "driver.py").write_text(DRIVER)
    r = subprocess.run(
        ["unshare", "--net", sys.executable, str(tmp_path / "driver.py"), str(tmp_path), str(ROOT), json.dumps(steps)],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "PATH": f"{os.environ.get('PATH', '/usr/bin:/bin')}:/usr/sbin:/sbin"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in r.stdout.splitlines()]


real_nginx = [needs_nginx, needs_root, needs_netns]


def marked(marks: list[pytest.MarkDecorator]):  # type: ignore[no-untyped-def]
    def wrap(f):  # type: ignore[no-untyped-def]
        for m in marks:
            f = m(f)
        return f

    return wrap


def guide_capture(site_path: str, real_path: str) -> str:
    """The live-site capture of a proxy whose enabled `site_path` (a link to `real_path`) is the
    guide's site for two nodes, as components/nginx_live.py's capture script prints it."""
    site = seeding.render_guide_site(["10.251.0.101", "10.251.0.102"], "mattermost.lab.internal")
    main = "/etc/nginx/nginx.conf"
    return (
        f"{nginx_live.CAPTURE_FILES}\nfile\t{main}\t{main}\nfile\t{site_path}\t{real_path}\n{nginx_live.CAPTURE_DUMP}\n"
        f"# configuration file {main}:\nhttp {{ include /etc/nginx/sites-enabled/*; }}\n\n"
        f"# configuration file {site_path}:\n{site}\n"
    )


# ---------------------------------------------------------------- live sites (components/nginx_live.py)

NODES = [Backend("10.251.0.101", 8065), Backend("10.251.0.102", 8065)]
MAIN = "/etc/nginx/nginx.conf"
AVAILABLE = "/etc/nginx/sites-available/mattermost"
ENABLED = "/etc/nginx/sites-enabled/mattermost"


def guide(nodes: list[Backend] = NODES) -> str:
    """The site Mattermost's Ubuntu guide installs (lab/seed)."""
    return seeding.render_guide_site([b.address for b in nodes], SERVER)


def plain() -> str:
    """The lab's plain-HTTP reference site."""
    return seeding.render_nginx_site([b.address for b in NODES])


def capture(sites: dict[str, tuple[str, str]], site_file: str = AVAILABLE) -> nginx_live.Capture:
    """sites: path as NGINX includes it -> (its real path, its text)."""
    files = {MAIN: "http {\n    include /etc/nginx/conf.d/*.conf;\n    include /etc/nginx/sites-enabled/*;\n}\n"}
    real = {MAIN: MAIN}
    for path, (realpath, text) in sites.items():
        files[path], real[path] = text, realpath
    dump = "".join(f"# configuration file {p}:\n{t}\n" for p, t in files.items())
    head = "".join(f"file\t{p}\t{r}\n" for p, r in real.items())
    return nginx_live.parse_capture(f"{nginx_live.CAPTURE_FILES}\n{head}{nginx_live.CAPTURE_DUMP}\n{dump}", site_file=site_file)


def runnable(text: str, d: Path, cert: str, key: str) -> str:
    """The site for a throwaway NGINX under `d`: its own certificate, its proxy cache in `d/cache`."""
    gcert, gkey = seeding.guide_cert_paths(SERVER)
    return text.replace(gcert, cert).replace(gkey, key).replace("/var/cache/nginx", str(d / "cache"))

"""The NGINX renderers, tested by reading the site the way NGINX does (a small tokenizer for the
structure, the real `nginx -t` for validity), by running the real NGINX in a private network
namespace against TLS upstreams with good and bad certificates, and by running the reload and
validate scripts against stubs and inside the real remote_files apply script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.nginx_render import (
    TEMPLATE,
    TRANSITION_TEMPLATE,
    Backend,
    ProxyPaths,
    proxy_paths,
    render_nginx_site,
    render_reload_script,
    render_restore_activate_script,
    render_validate_script,
)
from components.remote_files_render import FileSpec, encode_bundle, render_files_apply
from tests.helpers.certs import make_ca, make_leaf
from tests.helpers.nginx import NGINX, SERVER, UPSTREAM, needs_nginx, needs_root, nginx_t, nginx_tree, parse, site
from tests.helpers.scripts import SHELLS, run_script, syntax_ok
from tests.helpers.stubs import CLOCK, curl_stub, install_stubs

PROXY_SSL = {
    "proxy_pass": "https://backend",
    "proxy_ssl_verify": "on",
    "proxy_ssl_verify_depth": "2",
    "proxy_ssl_name": UPSTREAM,
    "proxy_ssl_server_name": "on",
    "proxy_ssl_session_reuse": "on",
    "proxy_ssl_protocols": "TLSv1.2 TLSv1.3",
}


# ---------------------------------------------------------------- structure, as NGINX tokenizes it


def test_upstream_lists_every_node_with_keepalive() -> None:
    root = parse(site(backends=[Backend("10.251.0.101", 8065), Backend("fd00::5", 9000)]))
    (up,) = [b for b in root.children if b.name == "upstream"]
    assert up.args == ["backend"]
    # max_fails=0: a node restarting is never marked down (render_nginx_site says why)
    assert up.get("server") == [["10.251.0.101:8065", "max_fails=0"], ["[fd00::5]:9000", "max_fails=0"]]
    assert up.one("keepalive") == "32"


def test_keepalive_zero_leaves_the_line_out() -> None:
    (up,) = [b for b in parse(site(keepalive=0)).children if b.name == "upstream"]
    assert up.get("keepalive") == []


def test_port_80_only_redirects_to_https() -> None:
    servers = [b for b in parse(site()).children if b.name == "server"]
    (plain,) = [s for s in servers if s.get("listen") == [["80"]]]
    assert plain.one("server_name") == SERVER
    (loc,) = plain.children
    assert loc.one("return") == "301 https://$server_name$request_uri"
    assert not any(n.startswith("proxy_") for b in plain.walk() for n, _ in b.directives)


def test_every_proxied_location_verifies_the_node() -> None:
    paths = proxy_paths("/etc/nginx/mattermost-tls")
    servers = [b for b in parse(site(paths)).children if b.name == "server"]
    (tls,) = [s for s in servers if s.get("listen") == [["443", "ssl"]]]
    proxied = [b for b in tls.walk() if b.get("proxy_pass")]
    assert {tuple(b.args) for b in proxied} == {("~", "/api/v[0-9]+/(users/)?websocket$"), ("/",)}
    for loc in proxied:
        for name, value in PROXY_SSL.items():
            assert loc.one(name) == value, (loc.args, name)
        assert loc.one("proxy_ssl_trusted_certificate") == paths.ca
        assert loc.one("proxy_http_version") == "1.1"
        assert loc.one("client_max_body_size") == "50M"
        headers = {a[0]: " ".join(a[1:]) for a in loc.get("proxy_set_header")}
        for h in ("Host", "X-Real-IP", "X-Forwarded-For", "X-Forwarded-Proto"):
            assert h in headers
    (ws,) = [b for b in proxied if b.args[0] == "~"]
    ws_headers = {a[0]: a[1] for a in ws.get("proxy_set_header")}
    assert ws_headers["Upgrade"] == "$http_upgrade" and ws_headers["Connection"] == "upgrade"
    (root_loc,) = [b for b in proxied if b.args == ["/"]]
    assert {a[0]: a[1] for a in root_loc.get("proxy_set_header")}["Connection"] == ""
    assert root_loc.one("proxy_read_timeout") == "600s"
    assert not any("http://" in " ".join(a) for b in tls.walk() for _, a in b.directives)


def test_browser_tls_settings() -> None:
    paths = proxy_paths("/etc/nginx/mattermost-tls")
    (tls,) = [b for b in parse(site(paths)).children if b.name == "server" and b.get("listen") == [["443", "ssl"]]]
    assert tls.one("ssl_protocols") == "TLSv1.2 TLSv1.3"
    assert tls.one("ssl_certificate") == paths.cert and tls.one("ssl_certificate_key") == paths.key
    assert tls.one("add_header").startswith("Strict-Transport-Security max-age=")
    assert tls.one("add_header").endswith("always")
    assert tls.one("ssl_session_timeout") == "1d"


def test_template_placeholders_are_exactly_filled() -> None:
    assert "@server_name@" in TEMPLATE.read_text()
    assert not re.search(r"@[A-Za-z_]\w*@", site())
    assert "$http_upgrade" in TEMPLATE.read_text(), "NGINX variables are not placeholders"
    assert "location @websocket_plain" in TRANSITION_TEMPLATE.read_text(), "named locations are not placeholders"


@pytest.mark.parametrize(
    "kw",
    [
        {"server_name": "a.com; include /etc/passwd"},
        {"server_name": "a{b}"},
        {"upstream_name": "x y"},
        {"backends": []},
        {"backends": [Backend("10.0.0.1", 8065), Backend("10.0.0.1", 8065)]},
        {"backends": [Backend("10.0.0.1", 0)]},
        {"backends": [Backend("evil;host", 1)]},
        {"keepalive": -1},
        {"paths": ProxyPaths("/a b", "/k", "/c")},
    ],
)
def test_values_that_would_change_nginx_grammar_are_refused(kw: dict[str, object]) -> None:
    args: dict[str, object] = {
        "server_name": SERVER,
        "backends": [Backend("10.0.0.1", 8065)],
        "upstream_name": UPSTREAM,
        "keepalive": 32,
        "paths": proxy_paths("/etc/nginx/t"),
        **kw,
    }
    with pytest.raises(ValueError):
        render_nginx_site(**args)  # type: ignore[arg-type]


def test_adding_a_node_only_adds_its_server_line() -> None:
    two = site(backends=[Backend("10.251.0.101", 8065), Backend("10.251.0.102", 8065)]).splitlines()
    three = site(
        backends=[Backend("10.251.0.101", 8065), Backend("10.251.0.102", 8065), Backend("10.251.0.103", 8065)]
    ).splitlines()
    added = [line for line in three if line not in two]
    assert added == ["    server 10.251.0.103:8065 max_fails=0;"] and len(three) == len(two) + 1


# ---------------------------------------------------------------- real nginx


@needs_nginx
@needs_root
@pytest.mark.parametrize("keepalive", [32, 0])
def test_nginx_accepts_the_rendered_site(tmp_path: Path, keepalive: int) -> None:
    paths, main, _ = nginx_tree(tmp_path)
    (tmp_path / "site.conf").write_text(site(paths, keepalive=keepalive))
    r = nginx_t(tmp_path, main)
    assert r.returncode == 0, r.stderr
    assert "syntax is ok" in r.stderr and "test is successful" in r.stderr


@needs_nginx
@needs_root
def test_nginx_t_catches_a_missing_trusted_ca(tmp_path: Path) -> None:
    paths, main, _ = nginx_tree(tmp_path)
    Path(paths.ca).unlink()
    r = nginx_t(tmp_path, main)
    assert r.returncode != 0 and "ca.crt" in r.stderr


UPSTREAM_SERVER = r'''
import http.server, json, ssl, sys
cert, key, port, log, ready = sys.argv[1:6]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        with open(log, "a") as f:
            f.write(json.dumps({"path": self.path, "upgrade": self.headers.get("Upgrade"),
                                "connection": self.headers.get("Connection"), "host": self.headers.get("Host"),
                                "proto": self.headers.get("X-Forwarded-Proto")}) + "\n")
        body = b'{"status":"OK"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
open(ready, "w").close()
s.serve_forever()
'''

# Runs inside `unshare --net`: a private network namespace with only loopback, so ports 80/443/8065
# are ours and nothing leaves the machine. Prints KEY=VALUE lines for the test to check.
E2E_DRIVER = r"""set -eu
d=$1
ip link set lo up
python3 "$d/upstream.py" "$d/node.crt" "$d/node.key" 8065 "$d/upstream.log" "$d/ready" 2> "$d/upstream.err" &
up=$!
trap 'kill "$up" 2>/dev/null || true; [ -e "$d/nginx.pid" ] && kill "$(cat "$d/nginx.pid")" 2>/dev/null || true' EXIT
i=0
while [ ! -e "$d/ready" ]; do i=$((i + 1)); [ "$i" -lt 200 ] || { cat "$d/upstream.err" >&2; exit 9; }; sleep 0.05; done
nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log"
c() { curl --silent --noproxy '*' --max-time 10 "$@"; }
echo "PING=$(c -o /dev/null -w '%{http_code}' --cacert "$d/tls/ca.crt" --resolve mattermost.example.com:443:127.0.0.1 https://mattermost.example.com/api/v4/system/ping)"
echo "WS=$(c -o /dev/null -w '%{http_code}' --cacert "$d/tls/ca.crt" --resolve mattermost.example.com:443:127.0.0.1 -H 'Upgrade: websocket' -H 'Connection: Upgrade' https://mattermost.example.com/api/v4/websocket)"
echo "REDIRECT=$(c -o /dev/null -w '%{http_code} %{redirect_url}' --resolve mattermost.example.com:80:127.0.0.1 http://mattermost.example.com/login)"
echo "HSTS=$(c -o /dev/null -D - --cacert "$d/tls/ca.crt" --resolve mattermost.example.com:443:127.0.0.1 https://mattermost.example.com/api/v4/system/ping | grep -ci strict-transport-security || true)"
"""


@needs_nginx
@needs_root
@pytest.mark.skipif(not shutil.which("unshare") or not shutil.which("curl") or not shutil.which("ip"), reason="needs unshare, ip, curl")
@pytest.mark.parametrize(
    ("node_cert", "ping", "log_says"),
    [
        ("good", "200", None),
        ("other-ca", "502", "upstream SSL certificate verify error"),
        ("wrong-name", "502", "upstream SSL certificate does not match"),
    ],
)
def test_real_nginx_only_proxies_to_verified_nodes(tmp_path: Path, node_cert: str, ping: str, log_says: str | None) -> None:
    paths, main, ca = nginx_tree(tmp_path, backends=[Backend("127.0.0.1", 8065)])
    signer = make_ca("rogue CA") if node_cert == "other-ca" else ca
    names = ["mm1", "127.0.0.1"] + ([] if node_cert == "wrong-name" else [UPSTREAM])
    cert, key = make_leaf(signer, names)
    (tmp_path / "node.crt").write_text(cert)
    (tmp_path / "node.key").write_text(key)
    (tmp_path / "upstream.py").write_text(UPSTREAM_SERVER.replace("python3", sys.executable))
    r = subprocess.run(
        ["unshare", "--net", "/bin/sh", "-c", E2E_DRIVER, "driver", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}:/usr/sbin"},
    )
    assert r.returncode == 0, r.stderr
    out = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert out["PING"] == ping
    assert out["REDIRECT"] == f"301 https://{SERVER}/login"
    assert out["HSTS"] == "1"
    requests = (tmp_path / "upstream.log").read_text().splitlines() if (tmp_path / "upstream.log").exists() else []
    if log_says is None:
        assert out["WS"] == "200"
        import json

        seen = [json.loads(x) for x in requests]
        ws = [x for x in seen if x["path"] == "/api/v4/websocket"]
        assert ws and ws[0]["upgrade"] == "websocket" and ws[0]["connection"] == "upgrade"
        pings = [x for x in seen if x["path"] == "/api/v4/system/ping"]
        assert pings and all(x["connection"] in (None, "") and x["proto"] == "https" for x in pings)
        assert all(x["host"] == SERVER for x in seen), "the node sees the public host name"
    else:
        assert requests == [], "an unverified node must never receive a request"
        assert log_says in (tmp_path / "error.log").read_text()


# ---------------------------------------------------------------- reload script

RELOAD_STUBS = {
    "systemctl": '#!/bin/sh\nprintf "systemctl %s\\n" "$*" >> "$STUB_DIR/calls"\n[ -e "$STUB_DIR/reload_fails" ] && { echo "nginx.service is not active, cannot reload." >&2; exit 1; }\nexit 0\n',
    "curl": curl_stub("curl: (22) The requested URL returned error: 502", 22),
    **CLOCK,
}


def make_stubs(root: Path, names: list[str] | None = None) -> Path:
    return install_stubs(root, {n: RELOAD_STUBS[n] for n in names or list(RELOAD_STUBS)})


def stub_env(d: Path, path: str | None = None) -> dict[str, str]:
    return {"PATH": path or f"{d}:/usr/sbin:/usr/bin:/sbin:/bin", "STUB_DIR": str(d), "LC_ALL": "C"}


def calls(d: Path) -> list[str]:
    return (d / "calls").read_text().splitlines() if (d / "calls").exists() else []


@pytest.mark.parametrize("shell", SHELLS)
def test_proxy_scripts_parse(shell: str) -> None:
    for s in (
        render_validate_script(),
        render_reload_script(service="nginx", server_name=SERVER, ca_file="/etc/nginx/t/ca.crt"),
        render_reload_script(service="nginx", server_name=SERVER, ca_file=None, https_port=8443),
        render_restore_activate_script(service="nginx"),
    ):
        assert syntax_ok(s, shell)


def test_reload_then_check_through_the_proxy(tmp_path: Path) -> None:
    d = make_stubs(tmp_path)
    (d / "curl_ok_after").write_text("2")
    script = render_reload_script(service="nginx", server_name=SERVER, ca_file="/etc/nginx/t/ca.crt")
    r = run_script(script, env=stub_env(d))
    assert r.returncode == 0, r.stderr
    c = calls(d)
    assert c[0] == "systemctl reload nginx"
    curls = [x for x in c if x.startswith("curl")]
    assert len(curls) == 3
    assert all(
        "--cacert /etc/nginx/t/ca.crt" in x and f"--resolve {SERVER}:443:127.0.0.1" in x
        and x.endswith(f"https://{SERVER}/api/v4/system/ping") for x in curls
    )


def test_reload_check_failure_shows_nginx_error_log(tmp_path: Path) -> None:
    d = make_stubs(tmp_path)
    log = tmp_path / "error.log"
    log.write_text("2025/01/01 [error] upstream SSL certificate verify error: (19:self-signed certificate in certificate chain)\n")
    script = render_reload_script(service="nginx", server_name=SERVER, ca_file=None, timeout_seconds=5, error_log=str(log))
    r = run_script(script, env=stub_env(d))
    assert r.returncode == 1
    assert "does not answer through the new configuration within 5 s" in r.stderr and "502" in r.stderr
    assert "upstream SSL certificate verify error" in r.stderr
    assert all("--insecure" in x for x in calls(d) if x.startswith("curl")), "provided certs: front hop not verified"


def test_reload_failure_fails(tmp_path: Path) -> None:
    d = make_stubs(tmp_path)
    (d / "reload_fails").write_text("")
    script = render_reload_script(service="nginx", server_name=SERVER, ca_file=None)
    r = run_script(script, env=stub_env(d))
    assert r.returncode != 0 and "cannot reload" in r.stderr


def test_reload_without_curl_skips_the_check(tmp_path: Path) -> None:
    d = make_stubs(tmp_path, ["systemctl", "date", "sleep"])
    for tool in ("cat",):
        (d / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    script = render_reload_script(service="nginx", server_name=SERVER, ca_file=None)
    r = run_script(script, env=stub_env(d, str(d)))
    assert r.returncode == 0 and "not checked end to end" in r.stdout


# ---------------------------------------------------------------- inside remote_files: validate and roll back


@needs_nginx
@needs_root
def test_broken_site_is_refused_by_nginx_t_and_the_previous_one_stays(tmp_path: Path) -> None:
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    paths, main, ca = nginx_tree(prefix)
    d = make_stubs(tmp_path)
    # `nginx` on PATH runs the real nginx against the throwaway prefix instead of /etc/nginx
    (d / "nginx").write_text(f'#!/bin/sh\nexec {NGINX} -p {prefix} -c {main} -e {prefix}/error.log "$@"\n')
    (d / "nginx").chmod(0o755)
    (d / "curl_ok_after").write_text("0")
    site_file = prefix / "site.conf"
    good_site = site_file.read_text()
    site_file.unlink()
    pre = f"PATH={d}:$PATH\nexport PATH\n"
    specs = [FileSpec(str(site_file))]
    apply = render_files_apply(
        "proxy-site", specs, validate=pre + render_validate_script(),
        activate=pre + render_reload_script(service="nginx", server_name=SERVER, ca_file=paths.ca),
        state_dir=str(tmp_path / "state"),
    )
    r = run_script(apply, encode_bundle([good_site]), env=stub_env(d))
    assert r.returncode == 0, r.stderr
    assert "systemctl reload nginx" in calls(d)

    broken = good_site.replace(paths.ca, str(prefix / "tls/missing-ca.crt"))
    n_before = len(calls(d))
    r = run_script(apply, encode_bundle([broken]), env=stub_env(d))
    assert r.returncode != 0
    assert "missing-ca.crt" in r.stderr and "validation failed" in r.stderr
    assert site_file.read_text() == good_site
    assert calls(d)[n_before:] == [], "no reload of a configuration nginx -t refused"

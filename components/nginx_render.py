"""Pure renderers for the NGINX proxy: the Mattermost site (from templates/nginx-site.conf), the
transitional site that carries the rollout (templates/nginx-site-transition.conf), where the
proxy's TLS files go, and the shell that validates, reloads and checks the site end to end.

Why a transitional site: the nodes switch to TLS one at a time, so for a while some speak TLS and
some plain HTTP. The original site (plain `proxy_pass http://`) would send requests to a switched
node over HTTP, which Mattermost answers with 400; the final site would refuse every node not
switched yet. The transitional site tries verified TLS first and falls back to plain HTTP only
when no node answers over TLS. It is installed only when the live site still proxies over plain
HTTP (a migration from plain), and replaced by the final https-only site once every node is ready.

Plain values in, text out. Values reaching the site file are checked against a plain-token
pattern (config.py already restricts them; a stray `;` or `{` would change NGINX's grammar), and
values reaching shell go through `shlex.quote`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict, Unpack

from components.remote_files_render import STATE_DIR, FileSpec, render_files_apply
from components.shell import fill, q, script
from components.tls_files import TlsFiles

TEMPLATE = Path(__file__).parent / "templates" / "nginx-site.conf"
TRANSITION_TEMPLATE = Path(__file__).parent / "templates" / "nginx-site-transition.conf"
UPSTREAM = "backend"
PING_PATH = "/api/v4/system/ping"
ERROR_LOG = "/var/log/nginx/error.log"
# the first lines nginx_live puts on the admin's site it changed (the guard below reads them)
TRANSITION_MARK = "mattermost-transport-encryption: TRANSITIONAL site"
HEADER = (
    "# Changed by mattermost-transport-encryption: the hop to the Mattermost nodes is verified TLS.\n"
    "# `pulumi up` renders this from the original; `pulumi destroy` puts the original back.\n"
)
TRANSITION_HEADER = (
    f"# {TRANSITION_MARK}, live only while the nodes switch to TLS one at a time:\n"
    "# verified TLS first, plain HTTP only when no node answers over TLS (see nginx_render).\n"
)

_TOKEN = re.compile(r"^[A-Za-z0-9._/+-]+$")
_PROSE = re.compile(r"^[A-Za-z0-9 ,.;:()/-]+$")


@dataclass(frozen=True)
class ProxyPaths(TlsFiles):
    """The proxy's TLS files: `cert` is what NGINX presents to browsers, `key` is 0600 root, `ca`
    verifies the nodes (proxy_ssl_trusted_certificate)."""


def proxy_paths(tls_dir: str) -> ProxyPaths:
    tls_dir = tls_dir.rstrip("/")
    return ProxyPaths(cert=f"{tls_dir}/server.crt", key=f"{tls_dir}/server.key", ca=f"{tls_dir}/ca.crt")


@dataclass(frozen=True)
class Backend:
    """One upstream server: a node's address and Mattermost port."""

    address: str
    port: int


def _token(what: str, value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"{what} {value!r} cannot go into the NGINX site: use letters, digits and . _ / + - only")
    return value


def _server_line(b: Backend, params: str = "") -> str:
    if not isinstance(b.port, int) or not 1 <= b.port <= 65535:
        raise ValueError(f"backend port out of range: {b.port!r}")
    try:
        ip = ipaddress.ip_address(b.address)
        host = f"[{ip}]" if ip.version == 6 else str(ip)
    except ValueError:
        host = _token("backend address", b.address)
    return f"    server {host}:{b.port}{params};"


def render_nginx_site(**site: Unpack[SiteArgs]) -> str:
    """The Mattermost site: port 80 redirects, port 443 terminates TLS and proxies to every node
    over TLS, verifying each node's certificate against the stack CA for `upstream_name`.

    Its servers get `max_fails=0` too (see `render_transition_site`): later changes (a new
    password, renewed certificates) restart the nodes one after another, a few seconds apart;
    with NGINX's default (max_fails=1, fail_timeout=10s) each refused connection during a restart
    marks that node down for 10 s, so by the last node's restart no node was left and NGINX
    answered 502 (4 of 208 requests in the lab's password rotation). With 0 a refused
    connection only moves that request on to the next node (proxy_next_upstream error)."""
    return fill(_site_template(site, TEMPLATE), _site_values(site))


def _upstream_body(backends: Sequence[Backend], keepalive: int, params: str = "") -> str:
    servers = [_server_line(b, params) for b in backends]
    if len(set(servers)) != len(servers):
        raise ValueError(f"a backend appears twice: {[b.address for b in backends]}")
    # `keepalive 0` is invalid; no line keeps NGINX's default (no idle upstream connections)
    return "\n".join(servers + ([f"    keepalive {keepalive};"] if keepalive else []))


class SiteArgs(TypedDict):
    """What both sites are rendered from (render_nginx_site, render_transition_site)."""

    server_name: str
    backends: Sequence[Backend]
    upstream_name: str
    keepalive: int
    paths: ProxyPaths
    template: NotRequired[str | None]
    """Another template's text instead of the file beside this module."""


def _site_template(site: SiteArgs, default: Path) -> str:
    text = site.get("template")
    return text if text is not None else default.read_text()


def _site_values(site: SiteArgs) -> dict[str, str]:
    """The placeholders both sites share; the TLS upstream's servers with max_fails=0."""
    backends, keepalive, paths = site["backends"], site["keepalive"], site["paths"]
    if not backends:
        raise ValueError("the upstream needs at least one node")
    if not isinstance(keepalive, int) or keepalive < 0:
        raise ValueError(f"keepalive must be a non-negative integer: {keepalive!r}")
    return {
        "upstream_body": _upstream_body(backends, keepalive, " max_fails=0"),
        "server_name": _token("server name", site["server_name"]),
        "cert_file": _token("certificate path", paths.cert),
        "key_file": _token("key path", paths.key),
        "trusted_ca_file": _token("CA path", paths.ca),
        "upstream_name": _token("upstream name", site["upstream_name"]),
    }


def render_transition_site(**site: Unpack[SiteArgs]) -> str:
    """The transitional site (templates/nginx-site-transition.conf): browsers as in the final site;
    towards the nodes verified TLS first, plain HTTP only when no node answers over TLS.

    The TLS upstream's servers get `max_fails=0`: NGINX must retry a node over TLS on the very next
    request once it is back, not skip it for `fail_timeout` after a refused connection during its
    restart (then no node would answer over TLS and the request would fall back to plain HTTP,
    which a switched node answers with 400)."""
    values = _site_values(site)
    values["plain_upstream_body"] = _upstream_body(site["backends"], site["keepalive"])
    return fill(_site_template(site, TRANSITION_TEMPLATE), values)


def render_transition_guard(*, owner: str, site_file: str) -> str:
    """Shell that ends the script (exit 0, nothing touched) unless the live site still proxies to
    the nodes over plain HTTP (the fallback) or over TLS without verification (an original
    `https://` with no `proxy_ssl_verify on`: the transitional upstream keeps restarting nodes
    from being marked down; nginx_live.needs_transition). A site that already proxies over
    verified TLS is left alone, so adding a node or renewing a certificate later never brings the
    plain fallback back. No site file: nobody to keep serving.
    The admin's site changed by nginx_live is recognised by its header lines: the final one is
    left alone even if another of its locations proxies elsewhere over `http://`; the transitional
    one (a rollout that stopped half-way) is installed again."""
    FileSpec(site_file)  # validates the path
    final, transitional = HEADER.splitlines()[0], TRANSITION_HEADER.splitlines()[0]
    return script("nginx-transition-guard.sh", site=site_file, final=final, transitional=transitional, owner=owner)


DRAIN_SECONDS = 1
"""How long the drained transitional site stays before the original comes back: a browser
follows a redirect within milliseconds."""


def render_transition_drain(*, site_file: str, target: str | None, service: str) -> str:
    """Shell for the start of the transition's delete: before the original (plain HTTP) site
    comes back, the transitional site's port-80 redirects proxy to `target` (the original's own
    proxy_pass, nginx_live.drain_proxy; the nodes are plain again by then) while its 443 server
    still answers, for DRAIN_SECONDS. Without it, a browser that got the redirect just before
    the reload that removes 443 is refused (the lab's zero-failure destroy saw it: one request).
    Nothing happens unless the file is still the transitional site; if NGINX refuses the drained
    site, the transitional one is put back and the restore goes on as before.
    The script: templates/nginx-transition-drain.sh."""
    FileSpec(site_file)  # validates the path
    if target is None:
        return ""
    redirect = r"return 301 https://\$host\$request_uri;"
    return script(
        "nginx-transition-drain.sh",
        site=site_file,
        transitional=TRANSITION_HEADER.splitlines()[0],
        service=service,
        seconds=DRAIN_SECONDS,
        sed=f"s|^\\([[:space:]]*\\){redirect}$|\\1proxy_set_header Host $http_host; proxy_pass {target};|",
    )


def render_transition_apply(
    *,
    owner: str,
    specs: Sequence[FileSpec],
    site_file: str,
    validate: str,
    activate: str,
    state_dir: str = STATE_DIR,
    helper: str | None = None,
) -> str:
    """remote_files' apply script (backup of the originals, owner ledger, validate, activate,
    rollback) behind render_transition_guard; `helper` is the installed host helper (None: inline)."""
    if site_file not in [s.path for s in specs]:
        raise ValueError(f"{owner}: the guarded site file {site_file} is not among the installed files")
    return render_transition_guard(owner=owner, site_file=site_file) + render_files_apply(
        owner, specs, validate=validate, activate=activate, state_dir=state_dir, helper=helper
    )


def render_site_handback(
    *,
    owner: str,
    specs: Sequence[FileSpec],
    validate: str,
    activate: str,
    transition_owner: str,
    transition_specs: Sequence[FileSpec],
    transition_activate: str,
    state_dir: str = STATE_DIR,
    helper: str | None = None,
) -> tuple[str, str]:
    """(apply, delete) of the https-only site. Stdin: `encode_bundle` of the len(specs) final
    contents, then the len(transition_specs) transitional ones.

    apply installs the final files (the first lines). delete is the rollout backwards: instead of
    the plain originals, which NGINX would send over http:// to nodes that still serve only TLS, it
    installs the transitional site (the last lines) in `transition_owner`'s name, validated and
    reloaded like any change (a failure leaves the https-only site in place and fails the delete).
    The originals stay kept; the transition's own delete, after the nodes went back to plain,
    puts them back."""
    n = len(specs)
    if n == 0 or len(transition_specs) == 0:
        raise ValueError(f"{owner}: the site and its handback need files")
    head = f"head -n {n}"
    tail = f"tail -n +{n + 1}"
    apply = render_files_apply(owner, specs, validate=validate, activate=activate, state_dir=state_dir, helper=helper)
    back = render_files_apply(
        transition_owner, transition_specs, validate=validate, activate=transition_activate,
        state_dir=state_dir, helper=helper,
    )
    # "cat; }" is where the script reads the bundle (remote_files_render._self_contained)
    assert apply.count("cat; }") == back.count("cat; }") == 1
    return apply.replace("cat; }", f"{head}; }}", 1), back.replace("cat; }", f"{tail}; }}", 1)


def render_validate_script() -> str:
    """`nginx -t` checks the whole configuration, certificates and keys included."""
    return "nginx -t\n"



def render_reload_script(
    *,
    service: str,
    server_name: str,
    ca_file: str | None,
    timeout_seconds: int = 30,
    https_port: int = 443,
    error_log: str = ERROR_LOG,
    answers: str = "answers through verified TLS to the nodes",
) -> str:
    """Reload NGINX (after `nginx -t` passed), then check the site end to end: a request to
    /api/v4/system/ping through NGINX only succeeds if NGINX reached a node over verified TLS
    (a failed upstream verification is a 502). `nginx -t` cannot see that.

    `ca_file` verifies the public certificate when the stack CA issued it; with a provided
    certificate the check does not verify the browser-facing hop (its issuer may not be in this
    host's trust store) - what it proves is the upstream hop. Reload is asynchronous (old
    workers keep the old configuration for a moment), hence the retry until the deadline.
    `answers` completes the success message (the transitional site may answer over plain HTTP).
    The script: templates/nginx-reload.sh.
    """
    if not isinstance(timeout_seconds, int) or timeout_seconds < 1:
        raise ValueError(f"timeout_seconds must be a positive integer: {timeout_seconds!r}")
    if not _PROSE.match(answers):  # it goes inside double quotes
        raise ValueError(f"answers must be plain words: {answers!r}")
    trust = f"--cacert {q(ca_file)}" if ca_file else "--insecure"
    url = f"https://{server_name}{'' if https_port == 443 else f':{https_port}'}{PING_PATH}"
    return script(
        "nginx-reload.sh",
        code={"trust": trust, "answers": answers},
        service=service,
        url=url,
        resolve=f"{server_name}:{https_port}:127.0.0.1",
        limit=timeout_seconds,
        error_log=error_log,
    )


def render_restore_activate_script(*, service: str) -> str:
    """On delete, after the original site is back: validate, then reload."""
    return f"nginx -t && systemctl reload {q(service)}\n"

"""The admin's live NGINX site, found in what NGINX really loads and changed only where the proxy
hop to the nodes needs it (pure; no I/O but a temporary file for the parser).

Why this exists: the site NGINX serves Mattermost from is not necessarily `proxy.siteFile`
(Mattermost's Ubuntu guide puts it at sites-available/mattermost, linked from sites-enabled), and
an admin's site carries things this program must not take away: the public certificate browsers
trust (e.g. Let's Encrypt), `listen [::]:443`, `http2`, caches, `client_max_body_size`, extra
locations and headers. So:

1. `render_capture_script` (run on the proxy host, read-only) prints `nginx -T` (every file NGINX
   loads, as NGINX resolved the includes) plus the real path of each file and of proxy.siteFile.
2. `find_site` parses each loaded file with crossplane (NGINX Inc's parser, `crossplane.parse`)
   and finds the server blocks that `proxy_pass` to the nodes (directly or through an upstream
   whose servers are node addresses). It refuses, naming the paths: a proxy.siteFile that is not
   that file, candidates in two files, an upstream name defined twice.
3. `render_site` changes that file's parsed tree and writes it back with `crossplane.build`:
   the upstream's `server` lines become the nodes, `proxy_pass http://` becomes `https://` with
   `proxy_ssl_verify on` and the other `proxy_ssl_*` lines in the same block, and - only when
   the browsers' certificate is ours (proxy.tls.source 'ca'/'provided') - the server's
   `ssl_certificate`/`ssl_certificate_key`. A site that serves browsers over plain HTTP gets
   port 443 (`ssl`) with a 301 server on its old listen lines. Everything else stays; comments
   stay; indentation and blank lines are crossplane's (the original bytes come back on destroy).
   The `transition` stage adds the plain-HTTP fallback of nginx_render (named locations and a
   plain upstream) around each location proxying over plain HTTP, leaves a `proxy_pass https://`
   without verification as it is, and keeps every node in the upstream (`max_fails=0`).

Where it runs, and why: the program, not the host. The capture's stdout (a secret output: a
config may hold credentials) is the original site as it was before the first change; Pulumi
keeps it in state, so every later `up` renders from the original (adding a node, renewing a
certificate) and never from its own output, and the transform is pure Python tested on real
config text. The host needs nothing but `nginx` (no python3, no crossplane there). The price:
the first preview cannot show the new site (the capture has not run yet), and the checks of
step 2 stop the program at the first `up` (after the read-only capture, before the site or any
node changes); later previews run them on the stored capture.
"""

from __future__ import annotations

import ipaddress
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import crossplane

from components.nginx_render import HEADER, TRANSITION_HEADER, Backend
from components.shell import script

CAPTURE_FILES = "mtm-capture-files"
CAPTURE_DUMP = "mtm-capture-dump"
PROXY_SSL = ("verify", "verify_depth", "trusted_certificate", "name", "server_name", "session_reuse", "protocols")
_FALLBACK = ("proxy_next_upstream", "error_page", "proxy_intercept_errors")
_DUMP_HEAD = re.compile(r"^# configuration file (.+):$")

Stmt = dict[str, Any]


class LiveSiteError(ValueError):
    """The live NGINX configuration cannot be changed safely; the message names the paths."""


@dataclass(frozen=True)
class Capture:
    """What render_capture_script printed."""

    files: dict[str, str]
    """Every file NGINX loads (path as included) -> its text, in NGINX's order."""
    realpaths: dict[str, str]
    """Path as included -> real path (symlinks resolved)."""
    site_file: str
    """proxy.siteFile as configured."""
    site_realpath: str
    """Its real path if NGINX loads it ('' when it loads no such file)."""
    site_is_link: bool


@dataclass(frozen=True)
class Hop:
    """What the proxy hop needs, from the config."""

    backends: Sequence[Backend]
    upstream_name: str
    """The name NGINX verifies in every node certificate (proxy_ssl_name)."""
    ca_file: str
    tls: str | None
    """proxy.tls.source: 'keep', 'ca', 'provided', or None (keep for an HTTPS site, else 'ca')."""
    cert_file: str
    key_file: str
    keepalive: int | None = None
    """proxy.upstreamKeepalive: None keeps the live upstream's own `keepalive`."""


@dataclass
class Site:
    """The live Mattermost site: one file, its parsed tree, and what in it proxies to the nodes."""

    path: str
    text: str
    tree: list[Stmt]
    upstreams: list[str] = field(default_factory=list)
    """Upstream names (defined in this file) whose servers are nodes."""
    servers: list[int] = field(default_factory=list)
    """Indexes (in walk order, see _servers) of the server blocks that proxy to the nodes."""

    @property
    def serves_https(self) -> bool:
        return any(_is_ssl_server(s) for s in self._proxying())

    def _proxying(self) -> list[Stmt]:
        every = list(_servers(self.tree))
        return [every[i] for i in self.servers]


def render_capture_script() -> str:
    """Read-only: `nginx -T` and the real path of every file it loaded. Constant text (no config
    value in it), so the command never runs again after its create (see the module docstring)."""
    return script("nginx-capture.sh", files_mark=CAPTURE_FILES, dump_mark=CAPTURE_DUMP)


def parse_capture(stdout: str, *, site_file: str) -> Capture:
    head, sep, dump = stdout.partition(f"\n{CAPTURE_DUMP}\n")
    lines = head.splitlines()
    if not sep or not lines or lines[0] != CAPTURE_FILES:
        raise LiveSiteError(f"the capture of the live NGINX configuration is not readable: {stdout[:200]!r}")
    realpaths: dict[str, str] = {}
    for line in lines[1:]:
        kind, a, b = (line.split("\t") + ["", ""])[:3]
        if kind == "file":
            realpaths[a] = b or a
    files: dict[str, str] = {}
    current: str | None = None
    chunk: list[str] = []
    for line in dump.split("\n"):
        m = _DUMP_HEAD.match(line)
        if m and m[1] in realpaths:
            if current is not None:
                files[current] = _dump_body(chunk)
            current, chunk = m[1], []
        elif current is not None:
            chunk.append(line)
    if current is not None:
        files[current] = _dump_body(chunk)
    # proxy.siteFile as NGINX sees it: a loaded file, possibly through a symlink
    site_real = realpaths.get(site_file, site_file if site_file in realpaths.values() else "")
    link = site_file in realpaths and realpaths[site_file] != site_file
    return Capture(files, realpaths, site_file, site_real, link)


def _dump_body(lines: list[str]) -> str:
    # nginx -T writes each file, then a newline
    text = "\n".join(lines)
    return text[:-1] if text.endswith("\n") else text


def parse_text(text: str, name: str) -> list[Stmt]:
    """One file's directives (comments kept), parsed by crossplane without following includes."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "site.conf"
        path.write_text(text)
        try:
            payload = crossplane.parse(str(path), single=True, comments=True, check_ctx=False, catch_errors=False)
        except crossplane.errors.NgxParserBaseException as e:
            raise LiveSiteError(f"{name}: crossplane cannot parse it: {e.strerror} (line {e.lineno})") from None
    return list(payload["config"][0]["parsed"])


def _walk(block: list[Stmt]) -> Iterator[Stmt]:
    for s in block:
        if s["directive"] == "stream":  # stream proxies have no http:// upstreams
            continue
        yield s
        if "block" in s:
            yield from _walk(s["block"])


def _servers(tree: list[Stmt]) -> Iterator[Stmt]:
    return (s for s in _walk(tree) if s["directive"] == "server" and "block" in s)


def _upstream_blocks(tree: list[Stmt]) -> Iterator[Stmt]:
    return (s for s in _walk(tree) if s["directive"] == "upstream" and "block" in s)


def _host_port(spec: str, default_port: int) -> tuple[str, int] | None:
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$", spec) or re.match(r"^([^:/\[\]]+)(?::(\d+))?$", spec)
    if not m:
        return None
    try:
        host = str(ipaddress.ip_address(m[1]))
    except ValueError:
        host = m[1]
    return host, int(m[2]) if m[2] else default_port


def _node_keys(backends: Sequence[Backend]) -> set[tuple[str, int]]:
    out = set()
    for b in backends:
        try:
            out.add((str(ipaddress.ip_address(b.address)), b.port))
        except ValueError:
            out.add((b.address, b.port))
    return out


def _proxy_target(stmt: Stmt) -> tuple[str, str, str] | None:
    """(scheme, host[:port], uri) of an http(s) proxy_pass, None otherwise (variables included)."""
    if stmt["directive"] != "proxy_pass" or not stmt["args"]:
        return None
    m = re.match(r"^(https?)://([^/$]+)(/.*)?$", stmt["args"][0])
    return (m[1], m[2], m[3] or "") if m else None


def _proxies(block: list[Stmt]) -> Iterator[tuple[list[Stmt], Stmt]]:
    """(the block holding it, the statement) for every proxy_pass under `block`."""
    for s in block:
        if s["directive"] == "proxy_pass":
            yield block, s
        if "block" in s:
            yield from _proxies(s["block"])


def _chain(block: list[Stmt], target: list[Stmt]) -> list[list[Stmt]] | None:
    """The blocks from `block` down to `target` (both included), None if `target` is not under it."""
    if block is target:
        return [block]
    for s in block:
        if "block" in s and (below := _chain(s["block"], target)) is not None:
            return [block, *below]
    return None


def _unverified_tls(tree: list[Stmt], srv: Stmt, block: list[Stmt]) -> bool:
    """True if a `proxy_pass https://` in `block` (of server `srv`) does not verify the peer: the
    innermost `proxy_ssl_verify` (location, server, the site file's http level) is not `on`
    (NGINX's default is off)."""
    for level in reversed([tree, *(_chain(srv["block"], block) or [block])]):
        for s in reversed(level):
            if s["directive"] == "proxy_ssl_verify":
                return s["args"] != ["on"]
    return True


def _hop_kinds(site: Site) -> set[str]:
    """How the site's proxy_pass lines reach the nodes today: 'plain', 'unverified' (TLS without
    verification), 'verified'."""
    kinds = set()
    every = list(_servers(site.tree))
    for i in site.servers:
        for block, stmt in _proxies(every[i]["block"]):
            t = _proxy_target(stmt)
            if t and t[1] in site.upstreams:
                unverified = t[0] == "https" and _unverified_tls(site.tree, every[i], block)
                kinds.add("plain" if t[0] == "http" else "unverified" if unverified else "verified")
    return kinds


def find_site(capture: Capture, backends: Sequence[Backend]) -> Site | None:
    """The live Mattermost site, or None when NGINX loads nothing that proxies to the nodes and
    proxy.siteFile does not exist (a fresh proxy: the program's own site goes there)."""
    nodes = _node_keys(backends)
    parsed = {path: parse_text(text, path) for path, text in capture.files.items()}
    # upstreams: name -> files defining it
    defined: dict[str, list[str]] = {}
    node_upstreams: dict[str, str] = {}
    for path, tree in parsed.items():
        for u in _upstream_blocks(tree):
            name = u["args"][0] if u["args"] else ""
            defined.setdefault(name, []).append(path)
            servers = [_host_port(s["args"][0], 80) for s in u["block"] if s["directive"] == "server" and s["args"]]
            if any(hp in nodes for hp in servers):
                node_upstreams[name] = path
    twice = {n: p for n, p in defined.items() if len(p) > 1}
    if twice:
        raise LiveSiteError(
            "NGINX loads two upstream blocks of the same name: "
            + "; ".join(f"'{n}' in {', '.join(p)}" for n, p in sorted(twice.items()))
            + ": keep one (the program changes the upstream whose servers are the nodes)"
        )
    candidates: dict[str, list[int]] = {}
    for path, tree in parsed.items():
        for i, srv in enumerate(_servers(tree)):
            for _, stmt in _proxies(srv["block"]):
                target = _proxy_target(stmt)
                if target is None:
                    continue
                hp = _host_port(target[1], 443 if target[0] == "https" else 80)
                if target[1] in node_upstreams or (hp in nodes):
                    if hp in nodes and target[1] not in node_upstreams:
                        raise LiveSiteError(
                            f"{path}: proxy_pass {stmt['args'][0]} (line {stmt['line']}) names a node directly; "
                            "put the nodes in an upstream block and proxy_pass to it"
                        )
                    candidates.setdefault(path, [])
                    if i not in candidates[path]:
                        candidates[path].append(i)
    used = set(candidates) | {node_upstreams[n] for n in node_upstreams}
    real = capture.realpaths
    if not candidates:
        if capture.site_realpath:
            raise LiveSiteError(
                f"NGINX loads proxy.siteFile {capture.site_file}, but no server block in what it loads proxies "
                f"to the nodes ({', '.join(f'{h}:{p}' for h, p in sorted(nodes))}): point proxy.siteFile at the "
                "live Mattermost site, or at a new file (the program writes its own site there)"
            )
        return None
    if len(used) > 1:
        raise LiveSiteError(
            "two candidate Mattermost sites proxy to the nodes: "
            + ", ".join(_shown(p, real) for p in sorted(used))
            + ": keep one (and its upstream in the same file), then set proxy.siteFile to it"
        )
    (path,) = used
    live_real = real.get(path, path)
    if capture.site_is_link:
        raise LiveSiteError(
            f"proxy.siteFile {capture.site_file} is a symlink; NGINX loads the Mattermost site from "
            f"{_shown(path, real)}: set proxy.siteFile to {live_real}"
        )
    if capture.site_realpath != live_real:
        raise LiveSiteError(
            f"proxy.siteFile is {capture.site_file}, but NGINX loads the Mattermost site from "
            f"{_shown(path, real)}: set proxy.siteFile to {live_real}"
        )
    return Site(
        path=path,
        text=capture.files[path],
        tree=parse_text(capture.files[path], path),
        upstreams=sorted(n for n, p in node_upstreams.items() if p == path),
        servers=candidates.get(path, []),
    )


def _shown(path: str, real: dict[str, str]) -> str:
    r = real.get(path, path)
    return path if r == path else f"{path} (-> {r})"


def _stmt(directive: str, *args: str, block: list[Stmt] | None = None) -> Stmt:
    s: Stmt = {"directive": directive, "line": -1, "args": list(args)}
    if block is not None:
        s["block"] = block
    return s


def _set(block: list[Stmt], after: Stmt, directives: list[Stmt]) -> None:
    """Replace each directive's existing occurrences in `block`, or insert it after `after`."""
    pos = block.index(after) + 1
    for new in directives:
        same = [i for i, s in enumerate(block) if s["directive"] == new["directive"]]
        if same:
            block[same[0]] = new
            for i in reversed(same[1:]):
                del block[i]
                if i < pos:
                    pos -= 1
        else:
            block.insert(pos, new)
            pos += 1


def _proxy_ssl(hop: Hop) -> list[Stmt]:
    return [
        _stmt("proxy_ssl_verify", "on"),
        _stmt("proxy_ssl_verify_depth", "2"),
        _stmt("proxy_ssl_trusted_certificate", hop.ca_file),
        _stmt("proxy_ssl_name", hop.upstream_name),
        _stmt("proxy_ssl_server_name", "on"),
        _stmt("proxy_ssl_session_reuse", "on"),
        _stmt("proxy_ssl_protocols", "TLSv1.2", "TLSv1.3"),
    ]


def _is_ssl_server(srv: Stmt) -> bool:
    block = srv["block"]
    return any(s["directive"] == "listen" and "ssl" in s["args"][1:] for s in block) or any(
        s["directive"] == "ssl" and s["args"] == ["on"] for s in block
    )


def _server_line(b: Backend, old: dict[tuple[str, int], list[str]], extra: Sequence[str]) -> Stmt:
    key = next(iter(_node_keys([b])))
    host = f"[{key[0]}]" if ":" in key[0] else key[0]
    params = [p for p in old.get(key, []) if not p.startswith("max_fails=")] if extra else old.get(key, [])
    return _stmt("server", f"{host}:{key[1]}", *params, *extra)


def _set_upstream(u: Stmt, backends: Sequence[Backend], extra: Sequence[str] = ()) -> None:
    block = u["block"]
    old = {}
    for s in block:
        if s["directive"] == "server" and s["args"]:
            hp = _host_port(s["args"][0], 80)
            if hp:
                old[hp] = s["args"][1:]
    first = next((i for i, s in enumerate(block) if s["directive"] == "server"), 0)
    rest = [s for s in block if s["directive"] != "server"]
    u["block"] = rest[:first] + [_server_line(b, old, extra) for b in backends] + rest[first:]


def _set_keepalive(u: Stmt, keepalive: int | None) -> None:
    """Set the upstream's `keepalive` when the stack names one (else the admin's stays)."""
    if keepalive is None:
        return
    block = u["block"]
    for s in block:
        if s["directive"] == "keepalive":
            s["args"] = [str(keepalive)]
            return
    last = max((i for i, s in enumerate(block) if s["directive"] == "server"), default=len(block) - 1)
    block.insert(last + 1, _stmt("keepalive", str(keepalive)))


def render_site(site: Site, hop: Hop, *, stage: str) -> str:
    """The live site with the proxy hop switched to verified TLS (`stage` 'final'), or the
    transitional version of it ('transition'); see the module docstring."""
    if stage not in ("final", "transition"):
        raise ValueError(f"stage must be final or transition: {stage!r}")
    if not hop.backends:
        raise ValueError("the upstream needs at least one node")
    tree = parse_text(site.text, site.path)  # a fresh copy: the site's own tree stays the original
    every = list(_servers(tree))
    servers = [every[i] for i in site.servers]
    tls = hop.tls
    if tls == "keep" and not all(_is_ssl_server(s) for s in servers):
        raise LiveSiteError(
            f"proxy.tls.source is 'keep', but {site.path} serves Mattermost to browsers over plain HTTP: "
            "set proxy.tls.source to 'ca' (a certificate from the stack CA) or 'provided'"
        )
    # a plain upstream for the fallback only where the site proxies over plain HTTP today
    plain_names = {u: f"{u}_mmtls_plain" for u in site.upstreams} if "plain" in _hop_kinds(site) else {}
    taken = {u["args"][0] for u in _upstream_blocks(tree) if u["args"]}
    if stage == "transition" and taken & set(plain_names.values()):
        raise LiveSiteError(f"{site.path} already defines {sorted(taken & set(plain_names.values()))}")

    # 1. the upstream servers are the nodes, tried again at once (max_fails=0: a node restarting
    # is never marked down; nginx_render.render_nginx_site says why)
    for u in list(_upstream_blocks(tree)):
        name = u["args"][0] if u["args"] else ""
        if name not in site.upstreams:
            continue
        if stage == "transition" and plain_names:
            plain = _stmt("upstream", plain_names[name], block=[dict(s) for s in u["block"]])
            _set_upstream(plain, hop.backends)
            _set_keepalive(plain, hop.keepalive)
            container = _container(tree, u)
            container.insert(container.index(u) + 1, plain)
        _set_upstream(u, hop.backends, ("max_fails=0",))
        _set_keepalive(u, hop.keepalive)

    # 2. each proxying server: https + verification, and the browsers' certificate if it is ours
    for si, srv in enumerate(servers):
        own_cert = tls in ("ca", "provided") or (tls is None and not _is_ssl_server(srv))
        if own_cert:
            _browser_tls(tree, srv, hop)
        named: list[Stmt] = []
        for li, (block, stmt) in enumerate(list(_proxies(srv["block"]))):
            target = _proxy_target(stmt)
            if target is None or target[1] not in site.upstreams:
                continue
            if stage == "transition" and target[0] == "https" and _unverified_tls(tree, srv, block):
                # TLS without verification accepts a node's old certificate and its new one: the
                # hop stays as it is until every node is ready (max_fails=0 above keeps NGINX from
                # marking a restarting node down)
                continue
            stmt["args"] = [f"https://{target[1]}{target[2]}", *stmt["args"][1:]]
            _set(block, stmt, _proxy_ssl(hop))
            if stage == "transition":
                named += _fallback(site, srv, block, stmt, f"mmtls_{si}_{li}", plain_names[target[1]], target[2])
        if named:
            srv["block"] += named
            _set(srv["block"], srv["block"][0], [_stmt("recursive_error_pages", "on")])
    return (TRANSITION_HEADER if stage == "transition" else HEADER) + crossplane.build(tree) + "\n"


def _container(tree: list[Stmt], target: Stmt) -> list[Stmt]:
    if target in tree:
        return tree
    for s in _walk(tree):
        if "block" in s and any(x is target for x in s["block"]):
            return s["block"]
    raise LookupError("statement not in tree")


def _browser_tls(tree: list[Stmt], srv: Stmt, hop: Hop) -> None:
    block = srv["block"]
    certs = [_stmt("ssl_certificate", hop.cert_file), _stmt("ssl_certificate_key", hop.key_file)]
    if _is_ssl_server(srv):
        _set(block, block[0], certs)
        return
    # plain HTTP to browsers: this server moves to 443 (ssl); its old listen lines redirect
    listens = [s for s in block if s["directive"] == "listen"] or [_stmt("listen", "80")]
    names = [dict(s) for s in block if s["directive"] == "server_name"]
    redirect = _stmt(
        "server",
        block=[
            *[dict(s) for s in listens],
            *names,
            _stmt("location", "/", block=[_stmt("return", "301", "https://$host$request_uri")]),
        ],
    )
    for s in listens:
        s["args"] = [_to_443(s["args"][0]), "ssl", *[a for a in s["args"][1:] if a != "ssl"]]
    if not any(s["directive"] == "listen" for s in block):
        block.insert(0, listens[0])
    anchor = [s for s in block if s["directive"] in ("listen", "server_name")][-1]
    _set(
        block,
        anchor,
        [
            *certs,
            _stmt("ssl_protocols", "TLSv1.2", "TLSv1.3"),
            _stmt("ssl_session_timeout", "1d"),
            # a zone name of our own: another site declaring shared:SSL with another size would clash
            _stmt("ssl_session_cache", "shared:mattermost_tls:10m"),
            _stmt("ssl_session_tickets", "off"),
            _stmt("add_header", "Strict-Transport-Security", "max-age=63072000", "always"),
        ],
    )
    container = _container(tree, srv)
    container.insert(container.index(srv), redirect)


def _to_443(spec: str) -> str:
    if spec.startswith("unix:"):
        return spec
    if spec.isdigit():
        return "443"
    m = re.match(r"^(\[[^\]]+\]|[^:]+):\d+$", spec)
    return f"{m[1]}:443" if m else f"{spec}:443"


def _fallback(site: Site, srv: Stmt, block: list[Stmt], stmt: Stmt, name: str, plain: str, uri: str) -> list[Stmt]:
    """nginx_render's fallback chain around one proxied location (`block` holds `stmt`)."""
    if not any(s is block for s in (x.get("block") for x in srv["block"] if x["directive"] == "location")):
        raise LiveSiteError(
            f"{site.path}: proxy_pass on line {stmt['line']} is not directly in a location of its server; "
            "the transitional fallback needs it there"
        )
    if uri:
        raise LiveSiteError(
            f"{site.path}: proxy_pass {stmt['args'][0]} (line {stmt['line']}) has a URI part, which NGINX "
            "does not allow in the named locations of the transitional fallback"
        )
    base = [dict(s) for s in block if "block" not in s and s["directive"] not in _FALLBACK]
    tls = [dict(s, args=list(s["args"])) for s in base]
    plain_body = [
        (_stmt("proxy_pass", f"http://{plain}") if s["directive"] == "proxy_pass" else s)
        for s in base
        if not s["directive"].startswith("proxy_ssl_")
    ]

    def nxt(*tail: Stmt) -> list[Stmt]:
        return [_stmt("proxy_next_upstream", "error", "timeout"), *tail]

    for s in [s for s in block if s["directive"] in _FALLBACK and s["directive"] != "error_page"]:
        block.remove(s)
    block += nxt(_stmt("error_page", "502", "504", "=", f"@{name}_plain"))
    return [
        _stmt(
            "location",
            f"@{name}_plain",
            block=[
                *plain_body,
                *nxt(_stmt("proxy_intercept_errors", "on"), _stmt("error_page", "400", "=", f"@{name}_tls_again")),
            ],
        ),
        _stmt(
            "location",
            f"@{name}_tls_again",
            block=[*tls, *nxt(_stmt("error_page", "502", "504", "=", f"@{name}_plain_last"))],
        ),
        _stmt("location", f"@{name}_plain_last", block=[*[dict(s) for s in plain_body], *nxt()]),
    ]


DRAIN_TARGET = re.compile(r"https?://[A-Za-z0-9._\[\]:-]+")
"""A proxy_pass target the drain puts in a sed replacement as it is: no URI, no sed or shell
metacharacter."""


def drain_proxy(site: Site | None) -> str | None:
    """Where the port-80 redirects of the transitional site proxy to while its delete drains
    (nginx_render.render_transition_drain): the original site's one proxy_pass target to the
    nodes from the servers that served browsers over plain HTTP (they are the ones that became a
    redirect), e.g. `http://backend`. None (no drain) when there is no such server, or they
    proxied to more than one target, or the target carries a URI (a `location /` could not
    stand in for it)."""
    if site is None:
        return None
    every = list(_servers(site.tree))
    targets: set[str] = set()
    for srv in (every[i] for i in site.servers):
        if _is_ssl_server(srv):
            continue
        for _block, stmt in _proxies(srv["block"]):
            target = _proxy_target(stmt)
            if target is not None and target[1] in site.upstreams:
                targets.add(stmt["args"][0])
    if len(targets) != 1:
        return None
    (only,) = targets
    return only if DRAIN_TARGET.fullmatch(only) else None


def needs_transition(site: Site | None) -> bool:
    """A site that proxies to the nodes over plain HTTP needs the transitional fallback; one that
    proxies over TLS without verification needs the transitional upstream (max_fails=0): with
    NGINX's default (max_fails=1, fail_timeout=10s) each restarting node is marked down for 10 s,
    and nodes restarting one after another leave no live upstream (the lab lost requests)."""
    return site is not None and bool(_hop_kinds(site) & {"plain", "unverified"})

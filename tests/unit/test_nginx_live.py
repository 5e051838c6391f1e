"""components/nginx_live.py on real site text: Mattermost's Ubuntu guide site (lab/seed), the
lab's plain reference site, a conf.d layout and a site that already proxies https:// without
verification. Discovery and its refusals, the minimal edit (everything not on the proxy hop stays,
compared directive by directive as crossplane parses it), `nginx -t` on the result, the capture
script run against a stub nginx, and a rollout through real NGINX with the transitional version
of the guide's site."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from components import nginx_live as live
from components.nginx_render import HEADER, TRANSITION_HEADER, Backend, proxy_paths
from lab import seeding
from tests.helpers.nginx import (
    AVAILABLE,
    ENABLED,
    NODES,
    PING,
    SERVER,
    UPSTREAM,
    capture,
    guide,
    marked,
    needs_nginx,
    needs_root,
    nginx_t,
    nginx_tree,
    plain,
    real_nginx,
    run_nodes,
    runnable,
)

NODES3 = [*NODES, Backend("10.251.0.103", 8065)]
CONFD = "/etc/nginx/conf.d/mattermost.conf"
PATHS = proxy_paths("/etc/nginx/mattermost-tls")


def https_unverified() -> str:
    """The manual guide's result: the reference site with only proxy_pass switched to https://."""
    return plain().replace("proxy_pass http://backend;", "proxy_pass https://backend;")


def hop(tls: str | None = None, nodes: list[Backend] = NODES) -> live.Hop:
    return live.Hop(nodes, UPSTREAM, PATHS.ca, tls, PATHS.cert, PATHS.key)


def flat(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(enclosing blocks, directive, args) of every statement, comments included, as crossplane parses it."""
    out = []

    def walk(block: list[dict], where: str) -> None:  # type: ignore[type-arg]
        for s in block:
            args = (s.get("comment", "").strip(),) if s["directive"] == "#" else tuple(s["args"])
            out.append((where, s["directive"], args))
            if "block" in s:
                walk(s["block"], f"{where}/{' '.join([s['directive'], *s['args']])}")

    walk(live.parse_text(text, "t"), "")
    return out


def delta(before: str, after: str) -> tuple[list, list]:  # type: ignore[type-arg]
    """(statements only in `before`, statements only in `after`), as multisets."""
    a, b = flat(before), flat(after)
    gone, new = list(a), []
    for s in b:
        if s in gone:
            gone.remove(s)
        else:
            new.append(s)
    return gone, new


GUIDE_LIVE = {ENABLED: (AVAILABLE, guide())}
LOC_WS = "/server/location ~ /api/v[0-9]+/(users/)?websocket$"
LOC_ROOT = "/server/location /"


def _ssl_lines(where: str) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        (where, "proxy_pass", ("https://backend",)),
        (where, "proxy_ssl_verify", ("on",)),
        (where, "proxy_ssl_verify_depth", ("2",)),
        (where, "proxy_ssl_trusted_certificate", (PATHS.ca,)),
        (where, "proxy_ssl_name", (UPSTREAM,)),
        (where, "proxy_ssl_server_name", ("on",)),
        (where, "proxy_ssl_session_reuse", ("on",)),
        (where, "proxy_ssl_protocols", ("TLSv1.2", "TLSv1.3")),
    ]


def _header_comments(header: str) -> list[tuple[str, str, tuple[str, ...]]]:
    return [("", "#", (line[1:].strip(),)) for line in header.splitlines()]


# ---------------------------------------------------------------- discovery and refusals


def test_guide_layout_is_found_through_its_sites_enabled_link() -> None:
    site = live.find_site(capture(GUIDE_LIVE), NODES)
    assert site is not None and (site.path, site.upstreams, site.servers) == (ENABLED, ["backend"], [1])
    assert site.serves_https and live.needs_transition(site)


def test_conf_d_layout_is_found() -> None:
    site = live.find_site(capture({CONFD: (CONFD, guide())}, site_file=CONFD), NODES)
    assert site is not None and site.path == CONFD


def test_a_site_file_that_is_not_the_live_one_is_refused_naming_both_paths() -> None:
    with pytest.raises(live.LiveSiteError) as e:
        live.find_site(capture(GUIDE_LIVE, site_file=CONFD), NODES)
    assert str(e.value) == (
        f"proxy.siteFile is {CONFD}, but NGINX loads the Mattermost site from {ENABLED} (-> {AVAILABLE}): "
        f"set proxy.siteFile to {AVAILABLE}"
    )


def test_the_sites_enabled_link_as_site_file_is_refused_naming_its_target() -> None:
    with pytest.raises(live.LiveSiteError, match=f"{ENABLED} is a symlink.*set proxy.siteFile to {AVAILABLE}"):
        live.find_site(capture(GUIDE_LIVE, site_file=ENABLED), NODES)


def test_two_candidate_sites_are_refused_naming_both() -> None:
    second = guide().replace("upstream backend", "upstream mm_old").replace("http://backend", "http://mm_old")
    with pytest.raises(live.LiveSiteError, match=f"two candidate Mattermost sites.*{CONFD}, {ENABLED}"):
        live.find_site(capture({**GUIDE_LIVE, CONFD: (CONFD, second)}), NODES)


def test_a_second_upstream_of_the_same_name_is_refused_naming_both_files() -> None:
    other = "upstream backend {\n    server 10.0.0.9:9000;\n}\n"
    with pytest.raises(live.LiveSiteError, match=f"'backend' in {CONFD}, {ENABLED}"):
        live.find_site(capture({CONFD: (CONFD, other), **GUIDE_LIVE}), NODES)


def test_a_loaded_site_file_that_proxies_elsewhere_is_refused() -> None:
    other = "server {\n    listen 8080;\n    location / {\n        proxy_pass http://10.0.0.9:9000;\n    }\n}\n"
    with pytest.raises(live.LiveSiteError, match=f"NGINX loads proxy.siteFile {CONFD}, but no server block"):
        live.find_site(capture({CONFD: (CONFD, other)}, site_file=CONFD), NODES)


def test_no_live_site_and_no_site_file_means_the_programs_own_site() -> None:
    assert live.find_site(capture({}, site_file=CONFD), NODES) is None


def test_an_unreadable_capture_is_refused() -> None:
    with pytest.raises(live.LiveSiteError, match="not readable"):
        live.parse_capture("nginx: [emerg] something", site_file=CONFD)


# ---------------------------------------------------------------- the minimal edit


def test_guide_site_final_changes_only_the_proxy_hop_and_keeps_the_public_certificate() -> None:
    site = live.find_site(capture(GUIDE_LIVE), NODES3)
    assert site is not None
    out = live.render_site(site, hop(None, NODES3), stage="final")
    gone, new = delta(guide(), out)
    servers = [f"10.251.0.10{i}:8065" for i in (1, 2)]
    assert sorted(gone) == sorted(
        [
            (LOC_WS, "proxy_pass", ("http://backend",)),
            (LOC_ROOT, "proxy_pass", ("http://backend",)),
            *(("/upstream backend", "server", (s,)) for s in servers),
        ]
    )
    assert sorted(new) == sorted(
        [
            *_header_comments(HEADER),
            # every node is tried again at once (max_fails=0: nginx_render.render_nginx_site)
            *(("/upstream backend", "server", (s, "max_fails=0")) for s in [*servers, "10.251.0.103:8065"]),
            *_ssl_lines(LOC_WS),
            *_ssl_lines(LOC_ROOT),
        ]
    )
    assert out.startswith(HEADER)


def test_keep_is_the_same_as_unset_for_an_https_site() -> None:
    site = live.find_site(capture(GUIDE_LIVE), NODES)
    assert site is not None
    assert live.render_site(site, hop("keep"), stage="final") == live.render_site(site, hop(None), stage="final")


def test_own_certificate_replaces_only_the_certificate_lines() -> None:
    site = live.find_site(capture(GUIDE_LIVE), NODES)
    assert site is not None
    gone, new = delta(
        live.render_site(site, hop(None), stage="final"), live.render_site(site, hop("ca"), stage="final")
    )
    cert, key = seeding.guide_cert_paths(SERVER)
    assert sorted(gone) == [("/server", "ssl_certificate", (cert,)), ("/server", "ssl_certificate_key", (key,))]
    assert sorted(new) == [
        ("/server", "ssl_certificate", (PATHS.cert,)),
        ("/server", "ssl_certificate_key", (PATHS.key,)),
    ]


def test_a_plain_site_moves_to_443_with_a_redirect_on_its_old_listen() -> None:
    site = live.find_site(capture({ENABLED: (AVAILABLE, plain())}), NODES)
    assert site is not None and not site.serves_https
    out = live.render_site(site, hop(None), stage="final")
    tree = live.parse_text(out, "out")
    servers = [s for s in tree if s["directive"] == "server"]
    redirect, main = servers
    assert [s["args"] for s in redirect["block"] if s["directive"] == "listen"] == [["80", "default_server"]]
    assert ["return", ["301", "https://$host$request_uri"]] in [
        [s["directive"], s["args"]] for s in redirect["block"][-1]["block"]
    ]
    assert [s["args"] for s in main["block"] if s["directive"] == "listen"] == [["443", "ssl", "default_server"]]
    assert ("/server", "ssl_certificate", (PATHS.cert,)) in flat(out)
    with pytest.raises(live.LiveSiteError, match="proxy.tls.source is 'keep'.*over plain HTTP"):
        live.render_site(site, hop("keep"), stage="final")


def test_a_site_already_on_https_without_verification_gets_verification_after_a_transitional_upstream() -> None:
    site = live.find_site(capture({ENABLED: (AVAILABLE, https_unverified())}), NODES)
    assert site is not None and live.needs_transition(site)
    gone, new = delta(https_unverified(), live.render_site(site, hop(None), stage="final"))
    # the server's listen 80 plain HTTP for browsers becomes 443 + redirect (its tls unset -> ca)
    assert ("/server/location /", "proxy_ssl_verify", ("on",)) in new and not any(g[1] == "proxy_pass" for g in gone)

    # the transition: the hop as it is (unverified TLS accepts a node's old and new certificate),
    # every node kept in the upstream while it restarts (NGINX's default marks it down for 10 s)
    out = live.render_site(site, hop(None), stage="transition")
    assert out.startswith(TRANSITION_HEADER)
    f = flat(out)
    assert [a for w, d, a in f if d == "proxy_pass"] == [("https://backend",)] * 2
    assert not any(d.startswith("proxy_ssl_") or d == "error_page" for _, d, _ in f)
    assert not any(d == "upstream" and a != ("backend",) for _, d, a in f), "no plain fallback upstream"
    assert [a for w, d, a in f if d == "server" and w.endswith("upstream backend")] == [
        (f"{b.address}:{b.port}", "max_fails=0") for b in NODES
    ]


def test_verification_the_admin_set_at_any_level_needs_no_transition() -> None:
    for verified in (
        https_unverified().replace("proxy_pass https://backend;", "proxy_pass https://backend;\n proxy_ssl_verify on;"),
        https_unverified().replace("server {", "server {\n    proxy_ssl_verify on;", 1),
        "proxy_ssl_verify on;\n" + https_unverified(),
    ):
        site = live.find_site(capture({ENABLED: (AVAILABLE, verified)}), NODES)
        assert site is not None and not live.needs_transition(site), verified
    # the innermost setting wins: off in the location overrides on at the server
    off = https_unverified().replace("server {", "server {\n    proxy_ssl_verify on;", 1)
    off = off.replace("proxy_pass https://backend;", "proxy_pass https://backend;\n proxy_ssl_verify off;")
    site = live.find_site(capture({ENABLED: (AVAILABLE, off)}), NODES)
    assert site is not None and live.needs_transition(site)


def test_transitional_guide_site_adds_the_fallback_and_the_final_site_has_none_of_it() -> None:
    site = live.find_site(capture(GUIDE_LIVE), NODES)
    assert site is not None
    out = live.render_site(site, hop(None), stage="transition")
    assert out.startswith(TRANSITION_HEADER)
    f = flat(out)
    assert ("/upstream backend", "server", ("10.251.0.101:8065", "max_fails=0")) in f
    assert ("/upstream backend_mmtls_plain", "server", ("10.251.0.101:8065",)) in f
    named = sorted(d[2][0] for d in f if d[1] == "location" and d[2][0].startswith("@"))
    assert named == sorted(f"@mmtls_0_{i}_{k}" for i in (0, 1) for k in ("plain", "tls_again", "plain_last"))
    assert ("/server", "recursive_error_pages", ("on",)) in f
    final = live.render_site(site, hop(None), stage="final")
    assert (
        "mmtls" not in final and "http://" not in final.replace("https://$server_name", "")
    )
    assert ("/upstream backend", "server", ("10.251.0.101:8065", "max_fails=0")) in flat(final)


def test_rendering_starts_from_the_original_every_time() -> None:
    site = live.find_site(capture(GUIDE_LIVE), NODES)
    assert site is not None
    first = live.render_site(site, hop(None), stage="transition")
    assert live.render_site(site, hop(None), stage="final") == live.render_site(site, hop(None), stage="final")
    assert site.text == guide() and first == live.render_site(site, hop(None), stage="transition")


def test_a_proxy_pass_with_a_uri_is_refused_for_the_transition() -> None:
    text = guide().replace(
        "proxy_pass http://backend;\n   }\n\n   location / {", "proxy_pass http://backend/x;\n   }\n\n   location / {"
    )
    site = live.find_site(capture({ENABLED: (AVAILABLE, text)}), NODES)
    assert site is not None
    with pytest.raises(live.LiveSiteError, match="has a URI part"):
        live.render_site(site, hop(None), stage="transition")


# ---------------------------------------------------------------- real NGINX


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory NGINX's workers (user nobody) can reach: pytest's tmp_path is 0700 root."""
    d = Path(tempfile.mkdtemp(prefix="mmtls-nginx-live-"))
    d.chmod(0o755)
    (d / "cache").mkdir()
    (d / "cache").chmod(0o777)
    yield d
    shutil.rmtree(d)


@needs_nginx
@needs_root
@pytest.mark.parametrize("stage", ["final", "transition"])
@pytest.mark.parametrize("kind", ["guide", "plain", "https_unverified"])
def test_nginx_accepts_the_changed_site(tmp_path: Path, stage: str, kind: str) -> None:
    paths, main, _ = nginx_tree(tmp_path)
    original = {"guide": guide, "plain": plain, "https_unverified": https_unverified}[kind]()
    original = runnable(original, tmp_path, paths.cert, paths.key)
    site = live.find_site(capture({ENABLED: (AVAILABLE, original)}), NODES)
    assert site is not None
    h = live.Hop(NODES, UPSTREAM, paths.ca, None, paths.cert, paths.key)
    (tmp_path / "site.conf").write_text(live.render_site(site, h, stage=stage))
    r = nginx_t(tmp_path, main)
    assert r.returncode == 0 and "test is successful" in r.stderr, r.stderr


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_capture_script_reports_every_loaded_file_and_its_real_path(tmp_path: Path, shell: str) -> None:
    (tmp_path / "avail").mkdir()
    (tmp_path / "enabled").mkdir()
    real = tmp_path / "avail" / "mattermost"
    real.write_text(guide())
    (tmp_path / "enabled" / "mattermost").symlink_to(real)
    stub = tmp_path / "bin" / "nginx"
    stub.parent.mkdir()
    link = tmp_path / "enabled" / "mattermost"
    stub.write_text(
        '#!/bin/sh\n[ "$1" = -T ] || exit 0\n'
        f"printf '# configuration file %s:\\n' {link}\ncat {link}\necho\n"
        "echo 'nginx: configuration file test is successful' >&2\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    r = subprocess.run(
        [shell, "-c", "set -eu\n" + live.render_capture_script()],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}"},
    )
    assert r.returncode == 0, r.stderr
    cap = live.parse_capture(r.stdout, site_file=str(real))
    assert cap.files == {str(link): guide()} and cap.realpaths == {str(link): str(real)}
    assert (cap.site_realpath, cap.site_is_link) == (str(real), False)


def test_capture_script_fails_with_nginx_s_own_error(tmp_path: Path) -> None:
    stub = tmp_path / "nginx"
    stub.write_text("#!/bin/sh\necho 'nginx: [emerg] unknown directive \"x\"' >&2\nexit 1\n")
    stub.chmod(0o755)
    r = subprocess.run(
        ["/bin/sh", "-c", "set -eu\n" + live.render_capture_script()],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
    )
    assert r.returncode == 1 and 'unknown directive "x"' in r.stderr and "does not load" in r.stderr


def _transition_of(kind: str, nodes: list[int], cache_root: Path):  # type: ignore[no-untyped-def]
    def render(paths, d: Path) -> str:  # type: ignore[no-untyped-def]
        backends = [Backend(f"127.0.0.{i + 1}", 8065) for i in nodes]
        addresses = [b.address for b in backends]
        if kind == "guide":
            text = runnable(seeding.render_guide_site(addresses, SERVER), cache_root, paths.cert, paths.key)
        else:  # the lab's plain reference site: browsers move to 443 as well
            text = seeding.render_nginx_site(addresses)
        site = live.find_site(capture({ENABLED: (AVAILABLE, text)}), backends)
        assert site is not None
        h = live.Hop(backends, UPSTREAM, paths.ca, None, paths.cert, paths.key)
        return live.render_site(site, h, stage="transition")

    return render


@marked(real_nginx)
@pytest.mark.parametrize("kind", ["guide", "plain"])
def test_transitional_site_never_fails_a_request_while_nodes_switch(tmp_path: Path, world_dir: Path, kind: str) -> None:
    """As test_nginx_transition's rollout, with nginx_live's transitional version of a real site."""
    steps: list[list[object]] = [["start", 1, "plain"], ["start", 2, "plain"], ["start", 3, "plain"], ["nginx"]]
    steps += [PING, PING, PING]
    for i in (1, 2, 3):
        steps += [["stop", i], PING, PING, ["start", i, "tls"], PING, PING]
    out = run_nodes(tmp_path, [1, 2, 3], steps, site=_transition_of(kind, [1, 2, 3], world_dir))
    assert [o["status"] for o in out] == [200] * len(out), out
    plain = [sum(v for k, v in o["served"].items() if k.endswith("-plain")) for o in out]
    assert plain[:5] == [1, 2, 3, 4, 5], "all plain: the fallback serves"
    assert plain[5:] == [5] * (len(out) - 5), plain


def _keepalive_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("keepalive ")]


def test_upstream_keepalive_is_the_admins_unless_the_stack_names_one() -> None:
    """proxy.upstreamKeepalive unset keeps the live upstream's own `keepalive 32;`; set, it is
    what the upstream (and the transition's plain fallback copy) gets."""
    site = live.find_site(capture(GUIDE_LIVE), NODES)
    assert _keepalive_of(site.text) == ["keepalive 32;"]
    for stage in ("final", "transition"):
        kept = live.render_site(site, hop(), stage=stage)
        assert set(_keepalive_of(kept)) == {"keepalive 32;"}, stage
        named = live.render_site(site, dataclasses.replace(hop(), keepalive=16), stage=stage)
        assert set(_keepalive_of(named)) == {"keepalive 16;"}, stage

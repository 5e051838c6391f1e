"""The transition's delete drains before the original plain-HTTP site comes back
(nginx_render.render_transition_drain, nginx_live.drain_proxy).

Why: the transitional site redirects port 80 to 443; the original has no 443. A browser that got
the redirect just before the reload that restores the original connects to a closed port (the
lab's zero-failure destroy lost one request of 315 that way). The drain first makes port 80
proxy as the original did while 443 still answers, reloads, waits, and only then the original
comes back.

The drain script runs for real here (sed, cmp, the file handling) with `nginx`/`systemctl`/`sleep`
stubs that record their calls; the drained site goes through real `nginx -t`.
"""

from __future__ import annotations

import os
from pathlib import Path

from components import nginx_live as live
from components.nginx_render import DRAIN_SECONDS, render_transition_drain
from tests.helpers.nginx import (
    AVAILABLE,
    ENABLED,
    NODES,
    UPSTREAM,
    capture,
    guide,
    needs_nginx,
    needs_root,
    nginx_t,
    nginx_tree,
    plain,
    runnable,
)
from tests.helpers.scripts import run_script


def _transitional(original: str) -> tuple[live.Site, str]:
    site = live.find_site(capture({ENABLED: (AVAILABLE, original)}), NODES)
    assert site is not None
    h = live.Hop(NODES, UPSTREAM, "/etc/nginx/mattermost-tls/ca.crt", None, "/x/cert.pem", "/x/key.pem")
    return site, live.render_site(site, h, stage="transition")


def _run(tmp_path: Path, site_text: str, target: str | None, nginx_ok: bool = True) -> tuple[str, list[str]]:
    """Run the drain on `site_text` in tmp_path; (the site file after it, the stub calls in order)."""
    site = tmp_path / "site.conf"
    site.write_text(site_text)
    os.chmod(site, 0o640)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    for name, rc in (("nginx", 0 if nginx_ok else 1), ("systemctl", 0), ("sleep", 0)):
        stub = bin_dir / name
        # what the file holds when each stub runs: the drained site must be in place at reload
        stub.write_text(f'#!/bin/sh\necho "{name} $* $(grep -c "return 301" {site} || true)" >> {calls}\nexit {rc}\n')
        stub.chmod(0o755)
    script = "set -eu\n" + render_transition_drain(site_file=str(site), target=target, service="nginx")
    r = run_script(script, env={**os.environ, "PATH": "/usr/bin:/bin"}, path=bin_dir, timeout=30)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("site.conf")) == ["site.conf"]
    assert oct(site.stat().st_mode & 0o777) == "0o640"
    return site.read_text(), calls.read_text().splitlines() if calls.exists() else []


def test_the_drain_target_is_the_original_plain_proxy_pass() -> None:
    site, _ = _transitional(plain())
    assert live.drain_proxy(site) == f"http://{site.upstreams[0]}"
    # an admin's HTTPS site: no redirect is added, nothing to drain
    guide_site = live.find_site(capture({ENABLED: (AVAILABLE, guide())}), NODES)
    assert live.drain_proxy(guide_site) is None
    assert live.drain_proxy(None) is None


def test_a_proxy_pass_with_a_uri_or_a_variable_gets_no_drain() -> None:
    text = plain()
    upstream = live.find_site(capture({ENABLED: (AVAILABLE, text)}), NODES).upstreams[0]  # type: ignore[union-attr]
    with_uri = text.replace(f"proxy_pass http://{upstream};", f"proxy_pass http://{upstream}/mm/;")
    assert with_uri != text
    site = live.find_site(capture({ENABLED: (AVAILABLE, with_uri)}), NODES)
    assert site is not None and live.drain_proxy(site) is None


def test_the_drained_site_proxies_on_80_keeps_443_and_reloads_before_the_original_returns(tmp_path: Path) -> None:
    site, text = _transitional(plain())
    target = live.drain_proxy(site)
    assert text.count("return 301 https://$host$request_uri;") == 1
    after, calls = _run(tmp_path, text, target)
    assert "return 301" not in after
    assert f"proxy_set_header Host $http_host; proxy_pass {target};" in after
    # everything else (the 443 server with its fallback) as it was
    assert (
        after.replace(
            f"proxy_set_header Host $http_host; proxy_pass {target};", "return 301 https://$host$request_uri;"
        )
        == text
    )
    # nginx -t and the reload see the drained file (0 redirects), then the pause
    assert calls == ["nginx -t 0", "systemctl reload nginx 0", f"sleep {DRAIN_SECONDS} 0"]


def test_the_drain_runs_twice_safely_and_leaves_other_sites_alone(tmp_path: Path) -> None:
    site, text = _transitional(plain())
    target = live.drain_proxy(site)
    once, _ = _run(tmp_path, text, target)
    (tmp_path / "again").mkdir()
    twice, calls = _run(tmp_path / "again", once, target)
    assert twice == once and calls == []
    original = plain()
    (tmp_path / "o").mkdir()
    untouched, calls = _run(tmp_path / "o", original, target)
    assert untouched == original and calls == [], "not the transitional site: nothing happens"
    assert render_transition_drain(site_file="/etc/nginx/x", target=None, service="nginx") == ""


def test_a_drained_site_nginx_refuses_is_put_back(tmp_path: Path) -> None:
    site, text = _transitional(plain())
    after, calls = _run(tmp_path, text, live.drain_proxy(site), nginx_ok=False)
    assert after == text
    assert calls == ["nginx -t 0"], "no reload, no pause"


@needs_nginx
@needs_root
def test_nginx_accepts_the_drained_site(tmp_path: Path) -> None:
    paths, main, _ = nginx_tree(tmp_path)
    original = runnable(plain(), tmp_path, paths.cert, paths.key)
    site = live.find_site(capture({ENABLED: (AVAILABLE, original)}), NODES)
    assert site is not None
    h = live.Hop(NODES, UPSTREAM, paths.ca, None, paths.cert, paths.key)
    work = tmp_path / "work"
    work.mkdir()
    drained, _ = _run(work, live.render_site(site, h, stage="transition"), live.drain_proxy(site))
    (tmp_path / "site.conf").write_text(drained)
    r = nginx_t(tmp_path, main)
    assert r.returncode == 0 and "test is successful" in r.stderr, r.stderr

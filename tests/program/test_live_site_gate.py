"""Nothing that changes the database or the cluster starts before NGINX's live site was captured
AND accepted (components/nginx.py `site_checked`): a capture that refuses (the configured siteFile
is not the live site, two candidate sites) stops the run before those hosts change."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.config.schema import COPY_SUFFIX
from lab import seeding
from tests.helpers.nginx import guide_capture
from tests.helpers.program import Program, deps
from tests.helpers.pulumi_mocks import COMMAND, ProviderMocks, start
from tests.helpers.stack_config import HOST_KEYS, lab_like


def test_database_and_cluster_commands_wait_for_the_live_site_capture(prod: Program) -> None:
    gated = [
        r.name
        for r in prod.by_type(COMMAND)
        if (r.name.startswith("database-") or r.name.startswith("cluster-") or "-cluster-" in r.name)
        # the read-only checks (e.g. MySQL's database-accounts) run before anything, the capture included
        and r.name not in deps(prod, "preflights-passed")
        # a command with no text (the cluster's key list) runs nothing on any host
        and any(r.inputs.get(k) for k in ("create", "update", "delete"))
    ]
    assert any(n.startswith("database-") for n in gated) and any("-cluster-" in n for n in gated), gated
    for name in gated:
        assert "proxy-live-site" in deps(prod, name), f"{name} does not wait for NGINX's live-site capture"
    # the capture itself is read-only and waits for no database or cluster step
    read_only = deps(prod, "preflights-passed")
    assert not {n for n in deps(prod, "proxy-live-site") - read_only if n.startswith("database") or "cluster" in n}


def test_no_host_but_the_proxy_gets_its_helper_before_the_live_site_is_accepted(prod: Program) -> None:
    """A refused site leaves every other host untouched: not even the host helper is installed
    there (the proxy's own helper runs the read-only capture)."""
    # (a node host's `<helper>-copy` runs nothing on `up`: its delete removes the copy of the helper)
    helpers = {r.name: r for r in prod.by_type(COMMAND) if r.name.startswith("host-helper-") and not r.name.endswith(COPY_SUFFIX)}
    for r in prod.by_type(COMMAND):
        if r.name.endswith(COPY_SUFFIX):
            assert r.inputs.get("create") is None, r.name
    waiting = {n for n in helpers if "proxy-live-site" in deps(prod, n)}
    assert len(helpers) >= 3 and len(waiting) == len(helpers) - 1, (sorted(helpers), sorted(waiting))
    (first,) = set(helpers) - waiting
    assert first in deps(prod, "proxy-live-site"), "the helper left out is the one the capture runs through"


def _run(capture: str, site_file: str | None, registered: list[str]) -> None:
    """NginxProxy with this capture, and a resource gated like __main__'s database and cluster;
    the names registered go to `registered` (also when the program fails)."""
    from components import adapter
    from components.nginx import NginxProxy
    from components.pki import Pki, PkiArgs

    proxy: dict[str, Any] = {"address": "10.251.0.10", "ssh": {"hostKey": HOST_KEYS["proxy"]}}
    if site_file:
        proxy["siteFile"] = site_file
    cfg = lab_like(["mm1", "mm2"], proxy=proxy)
    monitor = start(ProviderMocks({"proxy-live-site": capture}))

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        pki = Pki("pki", PkiArgs(ca=cfg.ca))
        nginx = NginxProxy("proxy", adapter.proxy_args(cfg, pki))
        gated = pulumi.CustomResource(
            "test:index:Gated", "database-stand-in", {}, opts=pulumi.ResourceOptions(depends_on=[nginx.site_checked])
        )
        return gated.urn

    try:
        program()
    finally:
        registered.extend(r.name for r in monitor.registrations)


GUIDE = guide_capture("/etc/nginx/sites-enabled/mattermost", seeding.GUIDE_SITE)


def test_an_accepted_live_site_lets_the_gated_resource_register() -> None:
    registered: list[str] = []
    _run(GUIDE, seeding.GUIDE_SITE, registered)
    assert "proxy-live-site" in registered and "database-stand-in" in registered


def test_a_refused_live_site_stops_the_gated_resource_before_it_registers() -> None:
    # the live site is sites-available/mattermost; proxy.siteFile (default) says conf.d/mattermost.conf
    registered: list[str] = []
    with pytest.raises(Exception, match="proxy.siteFile") as err:
        _run(GUIDE, None, registered)
    assert seeding.GUIDE_SITE in str(err.value)
    assert "proxy-live-site" in registered and "database-stand-in" not in registered

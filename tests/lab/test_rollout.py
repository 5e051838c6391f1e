"""Zero-downtime rollout on the real hosts (issue 6): turning TLS on for a running site while a
bounded load generator sends requests through NGINX fails no request.

The load is a browser: it asks for http://<server name>/api/v4/system/ping?get_server_status=true
(the only way into the seeded plain site) and follows a redirect to https:// the way a browser
does, verifying the certificate. That ping writes and deletes a row through the node's database
pool, whose connections the lab keeps short-lived (lab/seeding.py LAB_POOL): a node that cannot log
in to its database (old password, TLS refused) fails the request. NGINX's public certificate is therefore a provided one from a CA this test makes
(proxy.tls.source 'provided'), so the HTTPS leg is verified from the first request on; the hop
under test (NGINX -> nodes) is the same as with the stack CA.

The stand-in answers plain HTTP on its TLS port with Mattermost's own 400 (checked below): a
request NGINX sends over http:// to a switched node fails the load instead of being retried
elsewhere, so a 0 here means no such request reached a client.

1. 3 nodes, cluster mesh off: 0 failed requests during the whole first `up`; requests, failures
   and rollout seconds printed; up again changes nothing; destroy: every host byte-identical.
2. The lab stack as committed (cluster mesh on): 0 failed requests too. Nodes that do not gossip
   yet are not stopped for the gossip-encryption switch (components/cluster.py); the 1 response
   in 301 one run lost was cut by a stand-in that did not drain on stop like Mattermost's
   StopHTTPServer (it does since 90e9ca0, brought back after its revert).
3. 1 node: the failure window of its own restart is measured and printed (nothing can serve
   while the only node restarts); destroy restores it. The lab is left in its 3-node before state.
"""

from __future__ import annotations

import pytest

from lab import replay
from lab.hosts import Lab
from tests.helpers.lab import MILESTONES, NODES3, PING, ROOT, Ctx, stack_value

pytestmark = pytest.mark.lab

SITE_FILE = "/etc/nginx/sites-available/mattermost"


@pytest.fixture(scope="module")
def ctx(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Ctx:
    c = Ctx(lab, tmp_path_factory.mktemp("rollout"))
    c.fresh(3)
    return c


def test_three_nodes_switch_to_tls_without_a_failed_request(ctx: Ctx) -> None:
    state = ctx.tmp / "three.json"
    r = ctx.rollout(state, nodes=NODES3, cluster={**stack_value("cluster"), "enabled": False})
    print(r.report("3 nodes"))
    assert r.plain_ok > 0 and r.https_ok > 0, "the load must span the switch from plain to HTTPS"
    assert set(r.milestones) == set(MILESTONES), r.milestones
    # the https-only site is live: no plain fallback left behind (it would be a downgrade path)
    site = ctx.lab.ssh("proxy", f"cat {SITE_FILE}").stdout
    assert "proxy_pass http://" not in site and "backend_plain" not in site and site.count("proxy_ssl_verify on;") == 2
    # the 0 means something: a switched node answers plain HTTP with Mattermost's own 400
    got = ctx.lab.ssh(
        "proxy", f"curl -s -w ' %{{http_code}}' 'http://10.251.0.101:8065{PING}'", check=False
    ).stdout
    assert got == "Client sent an HTTP request to an HTTPS server.\n 400", got

    again = replay.up(ROOT, "lab", state_path=state, config={**ctx.config, "nodes": NODES3,
                                                            "cluster": {**stack_value("cluster"), "enabled": False}})
    assert again.ok and {s.name for s in again.steps if s.op != "same"} == set()
    ctx.destroy_and_compare(state)  # first, so the next test starts from the before state
    assert r.load.failed == 0, r.report("3 nodes")


def test_with_the_cluster_mesh_on_no_request_fails(ctx: Ctx) -> None:
    """The committed lab stack, cluster mesh on (see the module docstring)."""
    state = ctx.tmp / "cluster.json"
    r = ctx.rollout(state, nodes=NODES3)
    print(r.report("3 nodes, cluster mesh on"))
    ctx.destroy_and_compare(state)  # first, so the next test starts from the before state
    assert r.plain_ok > 0 and r.https_ok > 0, "the load must span the switch from plain to HTTPS"
    assert r.load.failed == 0, r.report("3 nodes, cluster mesh on")


def test_one_node_failure_window_is_measured(ctx: Ctx) -> None:
    ctx.fresh(1)
    try:
        state = ctx.tmp / "one.json"
        r = ctx.rollout(state, nodes=[{"name": "mm1"}], cluster={**stack_value("cluster"), "enabled": False})
        print(r.report("1 node"))
        assert r.https_ok > 0, "the site answers over HTTPS after the rollout"
        ctx.destroy_and_compare(state)
    finally:
        # the next module expects the usual 3-node before state
        ctx.lab.down()
        ctx.lab.up(nodes=3, extra=[])

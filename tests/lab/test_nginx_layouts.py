"""The NGINX proxy hop on real admin's sites (issue 10): the program finds the live Mattermost
site in what NGINX loads, changes only the hop to the nodes, and keeps the rest of the site.

Before-state "guide": Mattermost's Ubuntu guide layout (lab/seeding.proxy_layout_steps):
sites-available/mattermost linked from sites-enabled, HTTPS with a public certificate from a
second "public" CA of this test standing in for Let's Encrypt, http2, `listen [::]:443`, a proxy
cache, `client_max_body_size 100M`; plain HTTP to the nodes.

1. proxy.siteFile left at its default (conf.d/mattermost.conf): refused at the first `up`, naming
   both paths, before the site or any node changed.
2. proxy.siteFile pointing at the live site, proxy.tls.source unset: a browser load that trusts
   only the public CA fails no request during the whole rollout; afterwards NGINX verifies the
   nodes, still presents the public certificate, negotiates h2, answers on IPv6, keeps the cache
   and limits; up again changes nothing; destroy gives back every byte.

Before-state "confd": the same site at conf.d/mattermost.conf (the default proxy.siteFile), no
sites-enabled site: the same lifecycle with proxy.tls.source 'keep' set explicitly (the stack
CA's certificate and key are then not installed at all).

Before-state "https-unverified": the manual guide's result: every node serves TLS with a
certificate of the admin's own (config.json), NGINX's first-boot site proxies `https://` without
verifying. The transitional site keeps that hop (it accepts a node's old and new certificate) and
every node in the upstream (max_fails=0) and moves browsers to HTTPS: a browser load fails no
request while each node moves to the stack CA's certificate, and is answered over HTTPS once the
transitional site is in; afterwards NGINX verifies every node; destroy gives back every byte (the
nodes on their own certificates again).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from lab import replay, seeding
from lab.hosts import Lab
from tests.helpers.lab import (
    PING,
    PROXY_IP,
    ROOT,
    SERVER_NAME,
    BrowserLoad,
    diff,
    is_helper_file,
    public_cert,
    runs_on_host,
    snapshot,
    stack_value,
)
from tools import audit as audit_tool
from tools.load import Load, LoadResult

pytestmark = pytest.mark.lab

NODES3 = [{"name": "mm1"}, {"name": "mm2"}, {"name": "mm3"}]
HOSTS = ("mm1", "mm2", "mm3", "proxy")
NODE_IPS = ["10.251.0.101", "10.251.0.102", "10.251.0.103"]
"""The host helper and its lock: a refused run leaves them installed until destroy (the state holds them)."""


class Ctx:
    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab, self.tmp = lab, tmp
        self.public_ca, self.cert, self.key = public_cert()
        self.before: dict[str, dict[str, str]] = {}
        # the lab stack's proxy (siteFile sites-available/mattermost), tls.source unset
        self.config: dict[str, Any] = {
            "nodes": NODES3,
            "proxy": stack_value("proxy"),
            "cluster": {**stack_value("cluster"), "enabled": False},
        }

    def seed(self, layout: str) -> None:
        self.lab.down()
        self.lab.up(nodes=3, extra=[])
        for command, stdin in seeding.proxy_layout_steps(layout, NODE_IPS, SERVER_NAME, self.cert, self.key):
            self.lab.ssh("proxy", command, input=stdin)
        self.before = {h: snapshot(self.lab, h) for h in HOSTS}

    def unchanged(self, but_the_helper: bool = False) -> None:
        """Every host as seeded; `but_the_helper`: apart from the host helper and its lock, which a
        refused run leaves installed until destroy (the state still holds them)."""
        for host, before in self.before.items():
            changes = diff(before, snapshot(self.lab, host))
            if but_the_helper:
                changes = [c for c in changes if not is_helper_file(c)]
            assert changes == [], host


@pytest.fixture(scope="module")
def ctx(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Ctx:
    c = Ctx(lab, tmp_path_factory.mktemp("layouts"))
    c.seed("guide")
    yield c
    # the next module expects the usual before state
    lab.down()
    lab.up(nodes=3, extra=[])


def _h2_and_issuer(ca_pem: str) -> tuple[str | None, str]:
    context = ssl.create_default_context(cadata=ca_pem)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((PROXY_IP, 443), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
            issuer = dict(x[0] for x in tls.getpeercert()["issuer"])["commonName"]
            return tls.selected_alpn_protocol(), issuer


def test_guide_layout_with_the_default_site_file_is_refused_naming_both_paths(ctx: Ctx) -> None:
    # the lab's cluster on: its steps, like the database's, must wait for the capture's verdict
    config = {
        **ctx.config,
        "proxy": {k: v for k, v in ctx.config["proxy"].items() if k != "siteFile"},
        "cluster": stack_value("cluster"),
    }
    database_before = snapshot(ctx.lab, "postgres")
    ev = replay.up(ROOT, "lab", state_path=ctx.tmp / "refused.json", config=config)
    assert not ev.ok
    text = ev.program_error or "\n".join(s.error for s in ev.failed_steps)
    assert "proxy.siteFile is /etc/nginx/conf.d/mattermost.conf" in text, text
    assert "/etc/nginx/sites-enabled/mattermost (-> /etc/nginx/sites-available/mattermost)" in text, text
    ran = {s.name for s in ev.steps if s.result in ("ok", "failed") and s.op != "same"} & runs_on_host(ev)
    assert not {n for n in ran if n.startswith("database-") or "cluster" in n}, sorted(ran)
    # nothing of the proxy, the nodes or the database changed: NGINX still proxies http://, no
    # node switched, no cluster account or firewall, PostgreSQL as before
    ctx.unchanged(but_the_helper=True)
    database_changes = [c for c in diff(database_before, snapshot(ctx.lab, "postgres")) if not is_helper_file(c)]
    assert database_changes == []
    replay.destroy(ROOT, "lab", state_path=ctx.tmp / "refused.json")
    ctx.unchanged()
    assert diff(database_before, snapshot(ctx.lab, "postgres")) == []


def audit_browser_hop(config: dict[str, Any], state: Path, browser_ca: str | None) -> list[audit_tool.Check]:
    """tools/audit.py's browser-hop rows for this test's config (the lab stack file with the
    test's top-level overrides, as replay.up applies them)."""
    cfg = audit_tool.load_stack("lab", config)
    cas = x509.load_pem_x509_certificates(str(audit_tool.stack_outputs("lab", str(state))["caCertPem"]).encode())
    with audit_tool.private_dir() as d:
        return audit_tool.browser_hop_checks(cfg, cas, audit_tool.Hosts(cfg, d), browser_ca)


def up_under(load: Load, state: Path, config: dict[str, Any]) -> LoadResult:
    """`up` (which must succeed) while `load` runs: started before it, stopped after it (also when
    it raises). What the load saw."""
    load.start()
    try:
        ev = replay.up(ROOT, "lab", state_path=state, config=config)
    finally:
        result = load.stop()
    assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-1500:]}" for s in ev.failed_steps) or ev.program_error
    return result


def lifecycle(ctx: Ctx, config: dict[str, Any], site_path: str, label: str) -> str:
    """up under a browser load that trusts only the public CA, the checks, up again, the audit's
    browser hop, destroy. Returns the live site as it was after the up."""
    state = ctx.tmp / f"{label}.json"
    result = up_under(Load(SERVER_NAME, PROXY_IP, ctx.public_ca, PING, interval=0.02, max_seconds=900), state, config)
    print(f"{label}: {result.sent} requests through the public certificate, {result.failed} failed")
    assert result.sent > 20 and result.failed == 0, result

    site = ctx.lab.ssh("proxy", f"cat {site_path}").stdout
    # the hop to the nodes: verified TLS, every node
    assert "proxy_pass http://" not in site and site.count("proxy_ssl_verify on;") == 2, site
    # every node, never marked down while the nodes restart one after another (nginx_live)
    assert all(f"server {ip}:8065 max_fails=0;" in site for ip in NODE_IPS), site
    # the rest of the admin's site
    cert, key = seeding.guide_cert_paths(SERVER_NAME)
    for kept in (
        f"ssl_certificate {cert};",
        f"ssl_certificate_key {key};",
        "listen [::]:443 ssl http2;",
        "client_max_body_size 100M;",
        "proxy_cache mattermost_cache;",
        "keepalive 32;",
        "ssl_early_data on;",
    ):
        assert kept in site, kept
    # browsers: still the public certificate, still h2, still IPv6
    alpn, issuer = _h2_and_issuer(ctx.public_ca)
    assert (alpn, issuer) == ("h2", "rollout test CA")
    v6 = ctx.lab.ssh(
        "proxy",
        f"curl -sk -o /dev/null -w '%{{http_code}}' -H 'Host: {SERVER_NAME}' 'https://[::1]{PING}'",
        check=False,
    ).stdout
    assert v6 == "200", v6
    # the nodes switched: plain HTTP to a node is Mattermost's 400
    got = ctx.lab.ssh("proxy", f"curl -s -o /dev/null -w '%{{http_code}}' http://10.251.0.101:8065{PING}", check=False)
    assert got.stdout == "400", got.stdout

    again = replay.up(ROOT, "lab", state_path=state, config=config)
    assert again.ok and {s.name for s in again.steps if s.op != "same"} == set()

    # the audit verifies the admin's public certificate with the browsers' trust, not the stack CA
    cert_row, ping_row = audit_browser_hop(config, state, ctx.public_ca)
    assert cert_row.ok and "not the stack CA" in cert_row.detail, cert_row.detail
    assert ping_row.ok and "verified with --browser-ca" in ping_row.detail, ping_row.detail
    # without that bundle: the proxy host's system store, which does not know this test's public CA
    _, ping_row = audit_browser_hop(config, state, None)
    assert not ping_row.ok and "system trust store" in ping_row.detail, ping_row.detail

    gone = replay.destroy(ROOT, "lab", state_path=state)
    assert gone.ok, [s.error for s in gone.failed_steps]
    ctx.unchanged()
    return site


def test_guide_layout_keeps_the_admins_site_and_verifies_the_nodes(ctx: Ctx) -> None:
    lifecycle(ctx, ctx.config, seeding.GUIDE_SITE, "guide")
    assert ctx.lab.ssh("proxy", "readlink /etc/nginx/sites-enabled/mattermost").stdout.strip() == seeding.GUIDE_SITE


def test_conf_d_layout_with_keep(ctx: Ctx) -> None:
    ctx.seed("confd")
    proxy = {k: v for k, v in ctx.config["proxy"].items() if k != "siteFile"}  # the default: conf.d
    config = {**ctx.config, "proxy": {**proxy, "tls": {"source": "keep"}}}
    lifecycle(ctx, config, seeding.CONFD_SITE, "confd")


def test_https_without_verification_gets_verified_without_a_failed_request(ctx: Ctx) -> None:
    ctx.lab.down()
    ctx.lab.up(nodes=3, extra=[])
    _, node_cert, node_key = public_cert()  # the admin's own node certificate, never verified
    for node in ("mm1", "mm2", "mm3"):
        for command, stdin in seeding.manual_tls_node_steps(node_cert, node_key):
            ctx.lab.ssh(node, command, input=stdin)
    for command, stdin in seeding.https_unverified_proxy_steps():
        ctx.lab.ssh("proxy", command, input=stdin)
    ctx.before = {h: snapshot(ctx.lab, h) for h in HOSTS}
    config = {
        **ctx.config,
        "proxy": {**stack_value("proxy"), "tls": {"source": "provided", "cert": ctx.cert}},
        "proxyTlsKey": replay.Secret(ctx.key),
    }
    state = ctx.tmp / "unverified.json"
    load = BrowserLoad(SERVER_NAME, PROXY_IP, ctx.public_ca, PING, interval=0.02, max_seconds=900)
    result = up_under(load, state, config)
    print(f"https-unverified: {result.sent} requests ({load.https_ok} over HTTPS), {result.failed} failed")
    print(f"https-unverified: {load.plain_ok} answered on port 80, {load.https_ok} after the redirect")
    # without the transitional upstream NGINX marked each restarting node down for fail_timeout
    # (10 s) and, the nodes restarting one after another, had no live upstream for a moment
    # (4 of 322 requests failed); and browsers were only redirected by the final site, the run's
    # last step, so the load saw no HTTPS answer at all
    assert result.sent > 20 and result.failed == 0, result
    assert load.https_ok > 0, f"{load.https_ok} of {result.sent} requests answered over HTTPS"
    site = ctx.lab.ssh("proxy", f"cat {seeding.GUIDE_SITE}").stdout
    assert site.count("proxy_ssl_verify on;") == 2 and "mmtls" not in site and "proxy_pass http://" not in site
    again = replay.up(ROOT, "lab", state_path=state, config=config)
    assert again.ok and {s.name for s in again.steps if s.op != "same"} == set()
    gone = replay.destroy(ROOT, "lab", state_path=state)
    assert gone.ok, [s.error for s in gone.failed_steps]
    ctx.unchanged()

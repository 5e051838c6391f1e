"""Zero-downtime rollout on the real hosts (issue 6): turning TLS on for a running site while a
bounded load generator sends requests through NGINX fails no request.

The load is a browser: it asks for http://<server name>/api/v4/system/ping?get_server_status=true
(the only way into the seeded plain site) and follows a redirect to https:// the way a browser
does, verifying the certificate. That ping writes and deletes a row through the node's database
pool, whose connections the lab keeps short-lived (lab/_seed.py LAB_POOL): a node that cannot log
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

import datetime as dt
import http.client
import ipaddress
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab import replay
from lab.hosts import Lab
from tests.lab.test_lifecycle import PROXY_IP, SERVER_NAME, diff, snapshot
from tools.load import DB_PING, Load, LoadResult

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
SITE_FILE = "/etc/nginx/sites-available/mattermost"
PING = DB_PING
NODES3 = [{"name": "mm1"}, {"name": "mm2"}, {"name": "mm3"}]
HOSTS3 = ("mm1", "mm2", "mm3", "proxy", "postgres", "mariadb")
HOSTS1 = ("mm1", "proxy", "postgres", "mariadb")
# what the printed timeline shows: the transition, each node's switch, the final site
MILESTONES = ("proxy-transition", "mm1-tls-files", "mm2-tls-files", "mm3-tls-files", "proxy-site")


class BrowserLoad(Load):
    """tools.load.Load, but each request starts where a browser does: plain HTTP on port 80,
    following a redirect to the same URL over verified HTTPS. A 200 on either is a success."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.plain_ok = 0
        self.https_ok = 0

    def _one(self) -> str | None:
        conn = http.client.HTTPConnection(self.resolve_to, 80, timeout=self.timeout)
        try:
            conn.request("GET", self.path, headers={"Host": self.host})
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as e:
            return f"http: {type(e).__name__}"
        finally:
            conn.close()
        if resp.status == 200:
            self.plain_ok += 1
            return None
        if resp.status not in (301, 302, 307, 308):
            return f"http: HTTP {resp.status}"
        if resp.getheader("Location") != f"https://{self.host}{self.path}":
            return f"http: redirect to {resp.getheader('Location')}"
        err = super()._one()
        if err is None:
            self.https_ok += 1
        return err and f"https: {err}"


@dataclass
class Rollout:
    """One `up` under load: what the load saw and when the milestones completed."""

    ev: replay.Evaluation
    load: LoadResult
    plain_ok: int
    https_ok: int
    seconds: float
    offset: float
    """Seconds the load ran before the up started (its failure times count from its own start)."""
    milestones: dict[str, float] = field(default_factory=dict)
    """Seconds from the up's start to each milestone step's completion."""

    def report(self, label: str) -> str:
        r = self.load
        when = ", ".join(f"{k} {v:.1f}s" for k, v in self.milestones.items())
        window = (
            f"failures from {r.first_failure - self.offset:.1f}s to {r.last_failure - self.offset:.1f}s "
            f"(window {r.failure_window:.1f}s), errors {r.errors}"
            if r.failed and r.first_failure is not None and r.last_failure is not None
            else "no failure"
        )
        return (
            f"{label}: {r.sent} requests ({self.plain_ok} plain before the switch, {self.https_ok} over HTTPS), "
            f"{r.failed} failed; rollout {self.seconds:.1f}s; {window}; milestones: {when}"
        )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def public_cert() -> tuple[str, str, str]:
    """(CA PEM, certificate PEM, key PEM) for NGINX's browser side, from a CA of this test."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("rollout test CA")).issuer_name(_name("rollout test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(SERVER_NAME), x509.IPAddress(ipaddress.ip_address(PROXY_IP))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(SERVER_NAME)).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem).decode(), cert.public_bytes(pem).decode(), key_pem.decode()


def stack_value(key: str) -> Any:
    data = yaml.safe_load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())["config"]
    return data[f"mattermost-transport-encryption:{key}"]


class Ctx:
    def __init__(self, lab: Lab, tmp: Path):
        self.lab = lab
        self.tmp = tmp
        self.browser_ca, cert, key = public_cert()
        # config overrides replace whole top-level keys: the stack's proxy values plus our cert
        self.config: dict[str, Any] = {
            "proxy": {**stack_value("proxy"), "tls": {"source": "provided", "cert": cert}},
            "proxyTlsKey": replay.Secret(key),
        }
        self.before: dict[str, dict[str, str]] = {}

    def fresh(self, nodes: int) -> None:
        """The seeded before state with `nodes` nodes (the proxy's plain site lists exactly them)."""
        self.lab.down()
        self.lab.up(nodes=nodes, extra=[])
        hosts = HOSTS3 if nodes == 3 else HOSTS1
        self.before = {h: snapshot(self.lab, h) for h in hosts}

    def rollout(self, state: Path, **config: Any) -> Rollout:
        load = BrowserLoad(SERVER_NAME, PROXY_IP, self.browser_ca, PING, interval=0.02, max_seconds=900)
        t0 = time.monotonic()
        milestones: dict[str, float] = {}

        def on_step(step: replay.Step) -> None:
            if step.name in MILESTONES and step.result == "ok":
                milestones[step.name] = time.monotonic() - t0

        load.start()
        # a few requests through the plain site first: the load really started before the up
        while load.result.sent < 5 and time.monotonic() - t0 < 30:
            time.sleep(0.02)
        load_started, t0 = t0, time.monotonic()  # on_step measures from here, the up's start
        try:
            ev = replay.up(ROOT, "lab", state_path=state, config={**self.config, **config}, on_step=on_step)
            seconds = time.monotonic() - t0
            # and a few after it: the site answers on the far side of the switch too
            after = load.result.sent
            while load.result.sent < after + 5 and time.monotonic() - t0 < seconds + 30:
                time.sleep(0.02)
        finally:
            result = load.stop()
        assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-1500:]}" for s in ev.failed_steps) or ev.program_error
        return Rollout(ev, result, load.plain_ok, load.https_ok, seconds, t0 - load_started, milestones)

    def destroy_and_compare(self, state: Path) -> None:
        gone = replay.destroy(ROOT, "lab", state_path=state)
        assert gone.ok, [s.error for s in gone.failed_steps]
        for host, before in self.before.items():
            assert diff(before, snapshot(self.lab, host)) == [], host


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

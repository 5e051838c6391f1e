"""Renewing the certificates and rotating the CA on real hosts without a single failed request
(issue 9, "Zero failed requests, for every lifecycle step").

The lab stack as committed: 3 nodes, cluster mesh on, PostgreSQL, NGINX with the stack CA's
public certificate. The load is tools.load's: GET /api/v4/system/ping?get_server_status=true
through NGINX, every request a database write on the node; the client trusts what a consumer of
`caCertPem` trusts, and re-reads it after each `up` (Load.trust). Each step runs under
tools.load.under_load, which returns (requests, failed, seconds); the figures are printed, and
bench/lifecycle.py (`bench/run.py --only lifecycle`) runs these very test functions for the
README's figures table.

1. Renewal: the leaves a clock past `ca.certEarlyRenewalHours` renews (a preview with the
   replay's clock moved: exactly the leaf certificates) are replaced by an `up` under load, 0
   failed. The measured `up` replaces them by changing `ca.certValidityHours` (the same
   replacements and consumer updates): certificates issued by a moved clock would not be valid
   yet on the hosts, whose clocks are real.
2. CA rotation, one load across the three `up`s: `ca.rotation: stage` (every trust file holds
   both CAs, nothing served changes), `ca.rotation: switch` (every server presents a generation-2
   certificate; a control client trusting only the old CA now fails, so the 0 means something),
   `ca.generation: 2` with the rotation unset (the old CA leaves every trust file and the state):
   0 failed in each. Then an `up` changes nothing, the audit passes, and destroy gives back every
   byte.

Before nodes paused after a TLS-to-TLS restart (node_render._settle), the renewal failed 16 of
256 requests and the switch 11 of 240, all `502 no live upstreams` while the last node restarted
(NGINX had marked every node failed for its fail_timeout): a failing step prints where its
failures fall among the up's steps and NGINX's error log.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lab import replay
from lab.hosts import Lab
from tests.helpers.lab import PROXY_IP, SERVER_NAME, changed, diff, ping_through_proxy, runs_on_host, snapshot
from tools import audit as audit_tool
from tools.load import Load, StepUnderLoad, under_load

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
NODES3 = [{"name": "mm1"}, {"name": "mm2"}, {"name": "mm3"}]
HOSTS = ("mm1", "mm2", "mm3", "proxy", "postgres")
CA = {"commonName": "Mattermost lab transport CA", "organization": "Lab"}
SWITCH_CHECKS = {f"ca-switch-check-{h}" for h in ("mm1", "mm2", "mm3", "proxy", "database")}
"""components/ca_switch.py's read-only checks (only during `switch`; deleted, undoing nothing, after)."""
LEAVES = {"mm1-server-cert", "mm2-server-cert", "mm3-server-cert", "database-server-cert", "proxy-public-cert"}
# every trust file on the hosts (host, path): nodes (their own CA file for the DB hop and their
# system store), NGINX (verifies the nodes), the DB server
TRUST_FILES = [
    *((f"mm{i}", "/etc/mattermost-tls/ca.crt") for i in (1, 2, 3)),
    *((f"mm{i}", "/usr/local/share/ca-certificates/mattermost-transport-ca.crt") for i in (1, 2, 3)),
    ("proxy", "/etc/nginx/mattermost-tls/ca.crt"),
    ("postgres", "/etc/postgresql/*/main/mattermost-tls/ca.crt"),  # database.configDir's default
]


class Ctx:
    def __init__(self, lab: Lab, state: Path):
        self.lab = lab
        self.state = state
        self.config: dict[str, Any] = {"nodes": NODES3, "ca": dict(CA)}
        self.outputs: dict[str, Any] = {}
        self.before: dict[str, dict[str, str]] = {}
        self.load: Load | None = None
        self.old_ca = ""
        self.figures: dict[str, StepUnderLoad[Any]] = {}
        self.milestones: dict[str, float] = {}

    def boot(self) -> None:
        """Fresh lab (3 nodes), the hosts' before state, the first `up` (CA generation 1)."""
        self.lab.down()
        self.lab.up(nodes=3, extra=[])
        self.before = {h: snapshot(self.lab, h) for h in HOSTS}
        self.up()
        self.old_ca = self.outputs["caCertPem"]

    def close(self) -> None:
        if self.load is not None:
            self.load.stop()

    def up(self) -> replay.Evaluation:
        t0 = time.monotonic()
        self.milestones = {}

        def on_step(step: replay.Step) -> None:
            if step.result == "ok" and step.op != "same":
                self.milestones[step.name] = time.monotonic() - t0

        ev = replay.up(ROOT, "lab", state_path=self.state, config=self.config, on_step=on_step)
        assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-1500:]}" for s in ev.failed_steps) or ev.program_error
        self.outputs = ev.outputs
        return ev

    def step(self, label: str, load: Load, *, keep_running: bool) -> replay.Evaluation:
        r = under_load(self.up, load, label=label, keep_running=keep_running)
        self.figures[label] = r
        print(r)
        if r.failed:
            # where the failures fall among the up's steps, and what NGINX said
            print(f"  failures at {r.failure_times} s after the up started; steps done at "
                  + ", ".join(f"{k} {v:.2f}" for k, v in sorted(self.milestones.items(), key=lambda kv: kv[1])))
            print(self.lab.ssh("proxy", "tail -n 15 /var/log/nginx/error.log", check=False).stdout)
        return r.value

    def ca_files(self) -> dict[tuple[str, str], list[x509.Certificate]]:
        return {
            (h, p): x509.load_pem_x509_certificates(self.lab.ssh(h, f"cat {p}").stdout.encode())
            for h, p in TRUST_FILES
        }

    def served_by(self, address: str, port: int, ca_pem: str, name: str) -> tuple[bool, str]:
        """Does `address:port` (seen from the proxy) present a certificate `ca_pem` verifies as
        `name`? And what openssl said. Judged by s_client's verification line, not its exit code:
        after the handshake s_client sends close_notify and reads on; a server that closes without
        answering it (the stand-in's Python TLS server does, where Go's tls.Conn.Close sends
        close_notify) makes OpenSSL 3 report "unexpected eof while reading" and exit 1 with the
        certificate verified (a CI rehearsal failed so on one node of three)."""
        r = self.lab.ssh(
            "proxy",
            f"f=$(mktemp); cat > $f; echo | openssl s_client -connect {address}:{port} "
            f"-servername {name} -verify_hostname {name} -CAfile $f -verify_return_error -brief 2>&1; rc=$?; rm -f $f; exit $rc",
            input=ca_pem,
            check=False,
        )
        return "Verification: OK" in r.stdout, r.stdout[-400:]


def certs(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


@pytest.fixture(scope="module")
def ctx(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Any:
    c = Ctx(lab, tmp_path_factory.mktemp("carotate") / "lab.json")
    c.boot()
    yield c
    c.close()
    print("figures (requests, failed, seconds): " + "; ".join(f"{k} {tuple(v)}" for k, v in c.figures.items()))


def test_renewing_the_certificates_fails_no_request(ctx: Ctx) -> None:
    # what the clock renews: a preview 1 h past the leaves' renewal window (not the CA's)
    hours = 8760 - 720 + 1
    due = replay.preview(
        ROOT, "lab", state_path=ctx.state, config=ctx.config, now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)
    )
    renewed = {n for n, op in changed(due).items() if op in ("replace", "delete-replaced")}
    assert renewed == LEAVES, changed(due)
    ctx.config["ca"] = {**CA, "certValidityHours": 8759}
    load = Load(SERVER_NAME, PROXY_IP, ctx.outputs["caCertPem"], interval=0.02, max_seconds=900)
    ev = ctx.step("renew the certificates", load, keep_running=False)
    ch = changed(ev)
    assert {n for n, op in ch.items() if op in ("replace", "delete-replaced")} == renewed, ch
    assert {n for n, op in ch.items() if op == "update"} == set(changed(due)) - renewed, (ch, changed(due))
    assert ctx.outputs["caCertPem"] == ctx.old_ca, "renewal keeps the CA"
    assert ctx.figures["renew the certificates"].requests > 20, "the load must span the renewal"
    assert ctx.figures["renew the certificates"].failed == 0, ctx.figures["renew the certificates"]


def test_switch_without_stage_is_refused_before_any_host_changes(ctx: Ctx, tmp_path: Path) -> None:
    """components/ca_switch.py: `switch` straight after generation 1 (no `stage` applied) stops at
    the read-only checks, naming ca.rotation and the fix; every host is byte-identical after.
    Run on a copy of the state, so the real rotation below starts from the untouched one."""
    state = tmp_path / "skipped-stage.json"
    state.write_bytes(ctx.state.read_bytes())
    before = {h: snapshot(ctx.lab, h) for h in HOSTS}
    ev = replay.up(ROOT, "lab", state_path=state, config={**ctx.config, "ca": {**ctx.config["ca"], "rotation": "switch"}})
    assert not ev.ok
    failed = {s.name: s.error for s in ev.failed_steps}
    # the first refusal stops the run (as `pulumi up` without --continue-on-error): at least one
    assert failed and set(failed) <= SWITCH_CHECKS, failed
    for error in failed.values():
        assert "ca.rotation is 'switch', but CA generation 2 is not yet trusted" in error, error
        assert "pulumi config set --path ca.rotation stage && pulumi up" in error, error
    done = {s.name for s in ev.steps if s.result == "ok" and s.op != "same" and s.type == "command:remote:Command"}
    assert not (done & runs_on_host(ev)) - SWITCH_CHECKS, f"a host command ran: {done}"
    for host, was in before.items():
        assert diff(was, snapshot(ctx.lab, host)) == [], host


def test_stage_trusts_both_cas_everywhere_without_a_failed_request(ctx: Ctx) -> None:
    ctx.config["ca"] = {**ctx.config["ca"], "rotation": "stage"}
    ctx.load = Load(SERVER_NAME, PROXY_IP, ctx.old_ca, interval=0.02, max_seconds=1800)
    ev = ctx.step("CA rotation: stage", ctx.load, keep_running=True)
    ch = changed(ev)
    assert {n for n, op in ch.items() if op == "create"} == {"pki-ca2-key", "pki-ca2-cert"}, ch
    assert not {n for n, op in ch.items() if op in ("replace", "delete", "delete-replaced")}, ch
    bundle = certs(ctx.outputs["caCertPem"])
    assert len(bundle) == 2 and bundle[0] == certs(ctx.old_ca)[0]
    for where, found in ctx.ca_files().items():
        assert found == bundle, where
    assert ctx.figures["CA rotation: stage"].failed == 0, ctx.figures["CA rotation: stage"]
    ctx.load.trust(ctx.outputs["caCertPem"])  # the client re-reads caCertPem (a consumer's `up`)


def test_switch_serves_new_certificates_without_a_failed_request(ctx: Ctx) -> None:
    assert ctx.load is not None
    ctx.config["ca"] = {**ctx.config["ca"], "rotation": "switch"}
    # control: a client that never re-read caCertPem (trusts only the old CA) must fail now
    control = Load(SERVER_NAME, PROXY_IP, ctx.old_ca, interval=0.05, max_seconds=900).start()
    try:
        ev = ctx.step("CA rotation: switch", ctx.load, keep_running=True)
        # NGINX presents its new certificate at the very end of the `up`: let the control make 5
        # requests after it (on a loaded machine its last request can come before that switch)
        sent, t0 = control.result.sent, time.monotonic()
        while control.result.sent < sent + 5 and time.monotonic() - t0 < 30:
            time.sleep(0.05)
    finally:
        stale = control.stop()
    ch = changed(ev)
    assert {n for n, op in ch.items() if op in ("replace", "delete-replaced")} == LEAVES, ch
    new_ca_pem = _pem(certs(ctx.outputs["caCertPem"])[1])
    for address in ("10.251.0.101", "10.251.0.102", "10.251.0.103"):
        ok, said = ctx.served_by(address, 8065, new_ca_pem, "mattermost-app.internal")
        assert ok, (address, said)
        ok, said = ctx.served_by(address, 8065, ctx.old_ca, "mattermost-app.internal")
        assert not ok, (address, said)
    ok, said = ctx.served_by(PROXY_IP, 443, new_ca_pem, SERVER_NAME)
    assert ok, said
    print(f"control client trusting only the old CA: {stale}")
    assert stale.failed > 0 and "SSLCertVerificationError" in stale.errors, "the servers did switch CA"
    assert ctx.figures["CA rotation: switch"].failed == 0, ctx.figures["CA rotation: switch"]


def test_finish_drops_the_old_ca_without_a_failed_request(ctx: Ctx) -> None:
    assert ctx.load is not None
    new_ca = certs(ctx.outputs["caCertPem"])[1]
    ctx.config["ca"] = {**CA, "certValidityHours": 8759, "generation": 2}
    ev = ctx.step("CA rotation: finish", ctx.load, keep_running=False)
    ch = changed(ev)
    assert {n for n, op in ch.items() if op == "delete"} == {"pki-ca-key", "pki-ca-cert", *SWITCH_CHECKS}, ch
    assert not {n for n, op in ch.items() if op in ("create", "replace", "delete-replaced")}, ch
    assert certs(ctx.outputs["caCertPem"]) == [new_ca]
    for where, found in ctx.ca_files().items():
        assert found == [new_ca], where
    assert ctx.figures["CA rotation: finish"].failed == 0, ctx.figures["CA rotation: finish"]
    total = sum(ctx.figures[k].requests for k in ctx.figures if k.startswith("CA rotation"))
    assert total > 60, "the load must span the whole rotation"
    assert ping_through_proxy(ctx.outputs["caCertPem"]) == 5, "a client trusting only the new CA"
    assert ping_through_proxy(ctx.old_ca) == 0, "the old CA verifies nothing any more"


def test_after_the_rotation_up_changes_nothing_audit_passes_and_destroy_restores(ctx: Ctx) -> None:
    again = ctx.up()
    assert changed(again) == {}
    assert audit_tool.main(["--stack", "lab", "--state", str(ctx.state)]) == 0
    t0 = time.monotonic()
    gone = replay.destroy(ROOT, "lab", state_path=ctx.state)
    print(f"destroy after a rotation: {time.monotonic() - t0:.1f}s")
    assert gone.ok, [s.error for s in gone.failed_steps]
    for host, before in ctx.before.items():
        assert diff(before, snapshot(ctx.lab, host)) == [], host


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()

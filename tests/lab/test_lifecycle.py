"""The whole program against real hosts, in one lifecycle (issue: the lab end to end).

before (plain, the manual install) -> up -> every hop encrypted (packet capture, NGINX
verification, DB refusing plaintext) -> up again changes nothing -> add a node, renew the
certificates, remove the node: only the expected resources change and the site keeps answering
-> destroy: every file is back to its original bytes and the services run as before.
Then the same, shorter, for the MariaDB stack (Mattermost <= v10).

Tests in this module run in order and share the lab; each asserts one promise.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from lab import replay
from lab.hosts import Lab
from lab.naming import GATEWAY, address_of
from tests.helpers.lab import NODES3, PROXY_IP, ROOT, SERVER_NAME, changed, diff, ping_through_proxy, snapshot
from tests.helpers.lab import OrderedCtx as Ctx
from tools import audit as audit_tool
from tools.capture import analyze, capture
from tools.load import Load

pytestmark = pytest.mark.lab

NODES4 = NODES3 + [{"name": "mm4"}]
BRIDGE = "mmtls-br0"


PORTS_BPF = "tcp port 8065 or tcp port 5432 or tcp port 443 or tcp port 8074"


def stack_hosts_bpf(nodes: list[dict[str, str]], db: str = "postgres") -> str:
    """A BPF filter for packets between two hosts of the stack (its nodes, the proxy, the database)
    or between one of them and the browser (this machine, the lab's gateway)."""
    addresses = [GATEWAY, *(address_of(h) for h in [*(n["name"] for n in nodes), "proxy", db])]
    src = " or ".join(f"src host {a}" for a in addresses)
    dst = " or ".join(f"dst host {a}" for a in addresses)
    return f"({src}) and ({dst})"


def run_up(ctx: Ctx, stack: str = "lab", nodes: list[dict[str, str]] = NODES3, **kw: Any) -> replay.Evaluation:
    ev = replay.up(ROOT, stack, state_path=ctx.state, config={**ctx.config, "nodes": nodes}, **kw)
    # the tail of an error holds the host's own message; the head is the command text
    assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-1500:]}" for s in ev.failed_steps) or ev.program_error
    return ev


@pytest.fixture(scope="module")
def ctx(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Ctx:
    # a fresh "before" state with a 4th node waiting to be added later
    lab.down()
    lab.up(nodes=4, extra=[])
    c = Ctx(lab, tmp_path_factory.mktemp("state") / "lab.json")
    for host in ("mm1", "mm2", "mm3", "mm4", "proxy", "postgres", "mariadb"):
        c.before[host] = snapshot(lab, host)
    return c


def test_plaintext_before_up_is_visible_to_the_capture(ctx: Ctx, tmp_path: Path) -> None:
    """Control: on the plain install the capture does see plaintext, so a 0 later means something."""
    with capture(BRIDGE, "tcp port 8065 or tcp port 5432", tmp_path / "plain.pcap"):
        for _ in range(5):
            ctx.lab.ssh("proxy", f"curl -s -H 'Host: {SERVER_NAME}' http://127.0.0.1/api/v4/system/ping >/dev/null")
        ctx.lab.ssh("mm1", "systemctl restart mattermost")  # reconnects to the DB at once
    reports = analyze(tmp_path / "plain.pcap", {8065: "tls", 5432: "postgres"})
    assert reports[8065].plaintext_bytes > 0, reports[8065]
    assert reports[5432].plaintext_bytes > 0, reports[5432]


def test_up_creates_everything(ctx: Ctx) -> None:
    t0 = time.monotonic()
    ev = run_up(ctx)
    ctx.timings["first up"] = time.monotonic() - t0
    counts = ev.counts()
    assert counts.get("create", 0) == len(ev.steps) > 25, counts
    ctx.outputs = ev.outputs
    assert ev.secret_outputs >= {"mattermostDsn"}


def test_every_hop_is_encrypted_on_the_wire(ctx: Ctx, tmp_path: Path) -> None:
    """Every hop between the hosts the stack owns carries TLS (or SSH) only.

    The capture sees only packets whose BOTH ends are hosts of the stack: mm4 is booted already
    (in its plain "before" state, to be added later) and its own plain login to PostgreSQL is
    not a hop of this stack, so it must not count against it, nor hide a plain hop of the stack."""
    ca = ctx.outputs["caCertPem"]
    pcap = tmp_path / "up.pcap"
    with capture(BRIDGE, f"({stack_hosts_bpf(NODES3)}) and ({PORTS_BPF})", pcap):
        assert ping_through_proxy(ca, 20) == 20
        ctx.lab.ssh("mm2", "systemctl restart mattermost")  # a fresh DB login over the wire
        ctx.lab.ssh(
            "mm2",
            "for i in $(seq 60); do curl -sf --cacert /etc/mattermost-tls/ca.crt --resolve "
            "mattermost-app.internal:8065:127.0.0.1 https://mattermost-app.internal:8065/api/v4/system/ping "
            ">/dev/null && exit 0; sleep 0.5; done; exit 1",
        )
    reports = analyze(pcap, {8065: "tls", 5432: "postgres", 443: "tls", 8074: "tls"})
    assert reports[8074].streams == 0, f"cluster gossip over TCP must go through the SSH tunnels: {reports[8074]}"
    for port in (8065, 5432, 443):
        r = reports[port]
        print(r)
        assert r.streams > 0 and r.payload_bytes > 0, f"no traffic seen on {port}: the capture proves nothing"
        assert r.plaintext_bytes == 0, f"{r}: {r.samples}"
        assert r.tls_streams == r.streams


def test_audit_passes(ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_tool.main(["--stack", "lab", "--state", str(ctx.state)]) == 0
    out = capsys.readouterr().out
    assert "plaintext login of mmuser refused" in out and ", 0 failed" in out


def test_nginx_rejects_a_node_cert_not_from_the_stack_ca(ctx: Ctx) -> None:
    """A rogue cert with the right names on mm1: NGINX refuses it and serves from the others."""
    lab = ctx.lab
    lab.ssh(
        "mm1",
        "set -e; cd /etc/mattermost-tls; cp -a node.crt node.crt.keep; cp -a node.key node.key.keep\n"
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=mm1 "
        "-addext subjectAltName=DNS:mattermost-app.internal,DNS:mm1,IP:10.251.0.101 -keyout node.key -out node.crt 2>/dev/null\n"
        "chgrp mattermost node.key; chmod 0640 node.key; systemctl restart mattermost",
    )
    try:
        lab.ssh("proxy", ": > /var/log/nginx/error.log")
        assert ping_through_proxy(ctx.outputs["caCertPem"], 12) == 12, "the site must keep answering from mm2/mm3"
        log = lab.ssh("proxy", "cat /var/log/nginx/error.log").stdout
        assert "upstream SSL certificate verify error" in log and "10.251.0.101:8065" in log, log[-2000:]
        assert audit_tool.main(["--stack", "lab", "--state", str(ctx.state)]) == 1, "the audit must flag the rogue node"
    finally:
        lab.ssh(
            "mm1",
            "cd /etc/mattermost-tls && mv -f node.crt.keep node.crt && mv -f node.key.keep node.key && systemctl restart mattermost",
        )


def test_database_refuses_plaintext_for_the_mattermost_user(ctx: Ctx) -> None:
    inv = ctx.lab.inventory()["databases"]["postgres"]
    r = ctx.lab.ssh(
        "mm1",
        f"PGPASSWORD={inv['password']} psql 'host=10.251.0.21 dbname=mattermost user=mmuser sslmode=disable' -c 'select 1' 2>&1",
        check=False,
    )
    assert r.returncode != 0 and "pg_hba.conf rejects connection" in r.stdout, r.stdout


def test_up_again_changes_nothing(ctx: Ctx) -> None:
    t0 = time.monotonic()
    ev = run_up(ctx)
    ctx.timings["no-op up"] = time.monotonic() - t0
    assert changed(ev) == {}, changed(ev)
    assert ev.ssh_sessions == 0


def test_adding_a_node_changes_only_what_mentions_it(ctx: Ctx) -> None:
    with Load(SERVER_NAME, PROXY_IP, ctx.outputs["caCertPem"]) as load:
        ev = run_up(ctx, nodes=NODES4)
    result = load.result
    ch = changed(ev)
    created = {n for n, op in ch.items() if op == "create"}
    assert {"mm4", "mm4-server-key", "mm4-server-csr", "mm4-server-cert", "mm4-tls-files"} <= created, ch
    # mm4's host helper (components.host_helper) is named by its address
    assert all("mm4" in n or n.startswith("host-helper-10.251.0.104") for n in created), f"only what belongs to mm4 is created: {ch}"
    assert "host-helper-10.251.0.104-upload" in created, ch
    updated = {n for n, op in ch.items() if op != "create"}
    # the proxy's upstream lists, the DB's client list and the peers' sshd/firewall name the new node
    # (proxy-transition's update finds the site on TLS and changes nothing on the host)
    # (per-node cluster design, merged from main: the key directory lists mm4's key and each peer's
    # tunnel set gains a tunnel to it)
    allowed = {"proxy-site", "proxy-transition", "database-pg-hba", "cluster-public-keys"} | {
        f"mm{i}-cluster-{x}" for i in (1, 2, 3) for x in ("firewall", "tunnels")
    }
    # and each peer's copy of the host helper, whose own library holds those tables (issue 11:
    # components/host_helper.py): the upload and the install, in place
    allowed |= {f"host-helper-10.251.0.10{i}{s}" for i in (1, 2, 3) for s in ("", "-upload")}
    assert updated <= allowed, ch
    assert "proxy-site" in updated
    assert result.failed == 0, f"the site stopped answering while a node was added: {result}"
    assert ping_through_proxy(ctx.outputs["caCertPem"]) == 5
    served = ctx.lab.ssh("proxy", "grep -c 'server 10.251.0.10[1-4]:8065' /etc/nginx/sites-available/mattermost").stdout
    assert served.strip() == "4"


def test_rotating_the_ca_replaces_every_cert_and_nodes_serve_the_new_ones(ctx: Ctx) -> None:
    """A new CA (here: a new subject) replaces the CA and every cert under it; keys stay."""
    ctx.config["ca"] = {"commonName": "Mattermost lab transport CA 2", "organization": "Lab"}
    t0 = time.monotonic()
    with Load(SERVER_NAME, PROXY_IP, ctx.outputs["caCertPem"]) as load:
        ev = run_up(ctx, nodes=NODES4)
    ctx.timings["CA rotation"] = time.monotonic() - t0
    ch = changed(ev)
    replaced = {n for n, op in ch.items() if op in ("replace", "delete-replaced")}
    assert replaced == {
        "pki-ca-cert", "mm1-server-cert", "mm2-server-cert", "mm3-server-cert", "mm4-server-cert",
        "database-server-cert", "proxy-public-cert",
    }, ch
    updated = {n for n, op in ch.items() if op == "update"}
    assert updated == {
        "mm1-tls-files", "mm2-tls-files", "mm3-tls-files", "mm4-tls-files", "database-server-tls", "proxy-site",
        "proxy-transition",  # carries the CA and public cert too; on the host it skips (site already TLS)
        "mm1-db-ca", "mm2-db-ca", "mm3-db-ca", "mm4-db-ca",  # the DSN's CA file (components/node.py)
        # whose text is an entry of each node's copy of the host helper (components/host_helper.py)
        *(f"host-helper-10.251.0.10{i}{s}" for i in (1, 2, 3, 4) for s in ("", "-upload")),
    }, ch
    # the old CA's clients (the load) fail once NGINX presents the new chain: that is the point;
    # what matters is that the site answers with the new CA afterwards
    print(f"CA rotation under load (old CA pinned by the client): {load.result}")
    new_ca = ev.outputs["caCertPem"]
    assert new_ca != ctx.outputs["caCertPem"]
    assert ping_through_proxy(new_ca) == 5, "the site answers with the new CA after the rotation"
    old_fp = ctx.outputs["nodes"]["mm1"]["certFingerprintSha256"]
    new_fp = ev.outputs["nodes"]["mm1"]["certFingerprintSha256"]
    assert new_fp != old_fp
    served = ctx.lab.ssh(
        "proxy",
        "echo | openssl s_client -connect 10.251.0.101:8065 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
    ).stdout
    assert new_fp in served, served
    ctx.outputs = ev.outputs
    assert audit_tool.main(["--stack", "lab", "--state", str(ctx.state)]) == 0


def test_removing_the_node_puts_it_back_as_it_was(ctx: Ctx) -> None:
    ev = run_up(ctx, nodes=NODES3)
    ch = changed(ev)
    deleted = {n for n, op in ch.items() if op == "delete"}
    assert {"mm4", "mm4-server-key", "mm4-server-csr", "mm4-server-cert", "mm4-tls-files"} <= deleted, ch
    assert all("mm4" in n or n.startswith("host-helper-10.251.0.104") for n in deleted), ch
    assert "host-helper-10.251.0.104" in deleted, "its helper goes last, with nothing left on mm4"
    assert diff(ctx.before["mm4"], snapshot(ctx.lab, "mm4")) == []
    assert ping_through_proxy(ctx.outputs["caCertPem"]) == 5


def test_destroy_restores_every_file_and_the_plain_service(ctx: Ctx) -> None:
    t0 = time.monotonic()
    ev = replay.destroy(ROOT, "lab", state_path=ctx.state)
    ctx.timings["destroy"] = time.monotonic() - t0
    assert ev.ok, [s.error for s in ev.failed_steps]
    assert json.loads(ctx.state.read_text()).get("resources", []) == []
    for host, before in ctx.before.items():
        assert diff(before, snapshot(ctx.lab, host)) == [], host
    # services as before: nodes up (plain), NGINX proxying plain HTTP, the DB taking plain logins
    for node in ("mm1", "mm2", "mm3"):
        ctx.lab.ssh(
            node,
            "for i in $(seq 60); do curl -sf http://127.0.0.1:8065/api/v4/system/ping >/dev/null && exit 0; sleep 0.5; done; exit 1",
        )
    code = ctx.lab.ssh("proxy", f"curl -s -o /dev/null -w '%{{http_code}}' -H 'Host: {SERVER_NAME}' http://127.0.0.1/api/v4/system/ping").stdout
    assert code == "200"
    inv = ctx.lab.inventory()["databases"]["postgres"]
    ctx.lab.ssh("mm1", f"PGPASSWORD={inv['password']} psql 'host=10.251.0.21 dbname=mattermost user=mmuser sslmode=disable' -c 'select 1'")
    print("timings:", {k: round(v, 1) for k, v in ctx.timings.items()})


def test_mariadb_stack_lifecycle(ctx: Ctx, tmp_path: Path) -> None:
    """Mattermost <= v10 with MariaDB: up, verified TLS on the wire, idempotent, destroy restores.

    MySQL ended with v10, and each node's preflight refuses a node whose installed version is not
    the stack's (10.11.3): the nodes' stand-ins report that version for this test, and get their
    own back before the final comparison."""
    state = tmp_path / "lab-mysql.json"
    version_file = "/opt/mattermost/bin/mmstandin/VERSION"
    own = {n: ctx.lab.ssh(n, f"cat {version_file}").stdout for n in ("mm1", "mm2", "mm3")}
    for n in own:
        ctx.lab.ssh(n, f"printf '10.11.3\\n' > {version_file}")
    try:
        _mariadb_lifecycle(ctx, tmp_path, state)
    finally:
        for n, text in own.items():
            ctx.lab.ssh(n, f"printf '%s\\n' {shlex.quote(text.strip())} > {version_file}")
    for host in ("mm1", "mm2", "mm3", "mariadb", "proxy"):
        assert diff(ctx.before[host], snapshot(ctx.lab, host)) == [], host


def _mariadb_lifecycle(ctx: Ctx, tmp_path: Path, state: Path) -> None:
    ev = replay.up(ROOT, "lab-mysql", state_path=state)
    assert ev.ok, [f"{s.name}: {s.error}" for s in ev.failed_steps] or ev.program_error
    pcap = tmp_path / "mysql.pcap"
    with capture(BRIDGE, "tcp port 3306", pcap):
        ctx.lab.ssh("mm3", "systemctl restart mattermost")
    r = analyze(pcap, {3306: "mysql"})[3306]
    print(r)
    assert r.streams > 0 and r.plaintext_bytes == 0, r
    assert audit_tool.main(["--stack", "lab-mysql", "--state", str(state)]) == 0
    again = replay.up(ROOT, "lab-mysql", state_path=state)
    assert changed(again) == {}
    gone = replay.destroy(ROOT, "lab-mysql", state_path=state)
    assert gone.ok, [s.error for s in gone.failed_steps]

"""Every database connection of a node is encrypted: read replicas and a database-stored
configuration (issue 9), on real hosts.

The "before" state (one lab boot for the module): PostgreSQL `postgres` with a streaming read
replica `pgreplica` (replication over TLS, lab/seed/seed.sh), mm1 reading through the replica in
clear (config.json DataSourceReplicas and DataSourceSearchReplicas), mm2 keeping its
configuration in the database (MM_CONFIG in an EnvironmentFile of the admin's, plain DSN). The
stand-in reads through the replica pools on every status ping and, like Mattermost's
SetupConnection, will not start when a replica (or the config store) cannot be reached.

stacks/Pulumi.lab-replicas.yaml lists the replica for reads and search and mm2's configStore.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import replay, seeding
from lab.hosts import Lab
from tests.helpers.lab import diff, snapshot

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
STACK = "lab-replicas"
HOSTS = ("mm1", "mm2", "mm3", "postgres", "pgreplica")
PRIMARY, REPLICA = "10.251.0.21", "10.251.0.22"
REPLICA_CA = "/etc/postgresql/15/main/mattermost-tls/ca.crt"
"""The stack CA the program installs on the replica (database.tlsDir's default)."""
STATUS = (
    "curl -fsS --cacert /etc/mattermost-tls/ca.crt --resolve mattermost-app.internal:8065:127.0.0.1 "
    "https://mattermost-app.internal:8065/standin/status"
)
PING = (
    "curl -fsS --cacert /etc/mattermost-tls/ca.crt --resolve mattermost-app.internal:8065:127.0.0.1 "
    "'https://mattermost-app.internal:8065/api/v4/system/ping?get_server_status=true'"
)
ROWS = "SELECT md5(string_agg(Id || Value || CreateAt || coalesce(Active::text, '-') || SHA, ',' ORDER BY Id)) FROM Configurations"


def psql(lab: Lab, host: str, sql: str, db: str = "mattermost") -> str:
    return lab.ssh(host, f"runuser -u postgres -- psql -XAtq -d {db} -c {shlex.quote(sql)}").stdout.strip()


def login(lab: Lab, host: str, password: str, sslmode: str) -> str:
    """A login as mmuser from mm3 (python3 + psycopg2 are on the nodes for the stand-in)."""
    script = (
        "import sys, psycopg2\n"
        "try:\n"
        f"    psycopg2.connect(host={host!r}, user='mmuser', password=sys.stdin.read(), dbname='mattermost',\n"
        f"                     sslmode={sslmode!r}, sslrootcert='/etc/mattermost-tls/ca.crt', connect_timeout=10)\n"
        "    print('ok')\n"
        "except Exception as e:\n"
        "    print(str(e).strip().splitlines()[0])\n"
    )
    return lab.ssh("mm3", f"python3 -c {shlex.quote(script)}", input=password).stdout.strip()


class Ctx:
    def __init__(self, lab: Lab, state: Path, password: str):
        self.lab, self.state, self.password = lab, state, password
        self.before: dict[str, dict[str, str]] = {}
        self.rows = ""
        self.outputs: dict[str, Any] = {}
        self.conninfo = ""
        """The replica's primary_conninfo as seeded (sslmode=require)."""


@pytest.fixture(scope="module")
def ctx(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    lab.down()  # the primary is seeded for replication only when the replica is in the plan
    lab.up(nodes=3, extra=["pgreplica"])
    password = lab.inventory()["databases"]["postgres"]["password"]
    plain = f"postgres://mmuser:{password}@{PRIMARY}:5432/mattermost?sslmode=disable&connect_timeout=10"
    for cmd, stdin in seeding.plain_replica_steps(plain.replace(PRIMARY, REPLICA)):
        lab.ssh("mm1", cmd, input=stdin, timeout=120)
    for cmd, stdin in seeding.config_in_database_steps(plain):
        lab.ssh("mm2", cmd, input=stdin, timeout=120)
    c = Ctx(lab, tmp_path_factory.mktemp("replicas") / "state.json", password)
    for h in HOSTS:
        c.before[h] = snapshot(lab, h)
    c.rows = psql(lab, "postgres", ROWS)
    yield c
    if c.state.exists() and json.loads(c.state.read_text()).get("resources"):
        replay.destroy(ROOT, STACK, state_path=c.state)  # a failed test left resources behind
    # the standard lab for the modules after this one (a primary without replication)
    lab.down()
    lab.up(nodes=3, extra=[])


def test_the_before_state_reads_through_the_replica_in_clear(ctx: Ctx) -> None:
    lab = ctx.lab
    assert psql(lab, "pgreplica", "SELECT pg_is_in_recovery()") == "t"
    # the replication connection itself is TLS (hostssl on the primary); the standby may still be connecting
    q = "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)"
    lab.ssh("postgres", f"i=0; until [ \"$(runuser -u postgres -- psql -XAtq -c {shlex.quote(q)})\" = t ]; do i=$((i+1)); [ $i -lt 60 ] || exit 1; sleep 0.5; done", timeout=60)
    status = json.loads(lab.ssh("mm1", "curl -fsS http://127.0.0.1:8065/standin/status").stdout)
    replicas = status["subsystems"]["database"]["replicas"]
    assert {k: v["tlsMode"] for k, v in replicas.items()} == {"replica-0": "disable", "search-replica-0": "disable"}
    mm2 = json.loads(lab.ssh("mm2", "curl -fsS http://127.0.0.1:8065/standin/status").stdout)
    assert mm2["configStore"]["tlsMode"] == "disable" and mm2["config"].startswith("database postgres://mmuser@")
    assert ctx.rows and ctx.rows != "", "mm2's configuration is a row in Configurations"


def test_up_switches_every_connection_to_verified_tls(ctx: Ctx) -> None:
    ev = replay.up(ROOT, STACK, state_path=ctx.state)
    assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-1500:]}" for s in ev.failed_steps) or ev.program_error
    ctx.outputs = ev.outputs
    lab = ctx.lab
    for node in ("mm1", "mm2", "mm3"):
        assert json.loads(lab.ssh(node, PING).stdout)["status"] == "OK"
        db = json.loads(lab.ssh(node, STATUS).stdout)["subsystems"]["database"]
        assert db["tlsMode"] == "verify-full" and db["tls"], (node, db)
        for name in ("replica-0", "search-replica-0"):
            rep = db["replicas"][name]
            assert rep["target"].startswith(f"postgres://mmuser@{REPLICA}:5432/mattermost"), rep
            assert rep["tlsMode"] == "verify-full" and rep["tls"] and rep["pool"]["opened"] >= 1, (node, name, rep)
    # the replica's own view, right after a node read through it (its pool keeps the connection
    # idle for ConnMaxIdleTime): every mmuser session on it is TLS
    sessions = "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'mmuser'"
    ping_mm1 = (
        "curl -fsS -o /dev/null --cacert /etc/postgresql/15/main/mattermost-tls/ca.crt "
        "--resolve mattermost-app.internal:8065:10.251.0.101 "
        "'https://mattermost-app.internal:8065/api/v4/system/ping?get_server_status=true'"
    )
    rows = lab.ssh("pgreplica", f"{ping_mm1}; runuser -u postgres -- psql -XAtq -c {shlex.quote(sessions)}").stdout.split()
    assert rows and set(rows) == {"t"}, rows


def replication_login(lab: Lab, sslmode: str, root: str = "") -> tuple[int, str]:
    """A replication connection from the replica to the primary, as the WAL receiver makes it
    (user replicator, its password from ~postgres/.pgpass): exit code and what psql said."""
    # dbname=replication as the WAL receiver sets it: ~/.pgpass matches the entry by it
    conninfo = f"host={PRIMARY} port=5432 user=replicator dbname=replication replication=true sslmode={sslmode} connect_timeout=10"
    conninfo += f" sslrootcert={root}" if root else ""
    r = lab.ssh(
        "pgreplica", f"runuser -u postgres -- psql {shlex.quote(conninfo)} -XAtqc IDENTIFY_SYSTEM 2>&1", check=False
    )
    return r.returncode, r.stdout.strip()


def test_the_replication_link_verifies_the_primary_with_the_stack_ca(ctx: Ctx) -> None:
    """Once the primary serves its stack certificate, the lab's admin tightens the replication
    link from sslmode=require to verify-full against the stack CA the program installed on the
    replica (lab/seeding.replication_verify_step; verify-full: the replica dials the primary's
    address, an IP SAN of its certificate). The primary sees a TLS replication connection, a
    wrong root is refused, and plain replication is refused (hostssl only)."""
    lab = ctx.lab
    walsenders = "SELECT r.pid || '|' || s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE r.usename = 'replicator'"
    before = psql(lab, "postgres", walsenders, db="postgres").split()
    ctx.conninfo = psql(lab, "pgreplica", "SHOW primary_conninfo", db="postgres")
    assert "sslmode=require" in ctx.conninfo, ctx.conninfo
    lab.ssh("pgreplica", seeding.replication_verify_step(REPLICA_CA), timeout=120)
    streaming = psql(lab, "pgreplica", "SELECT conninfo FROM pg_stat_wal_receiver WHERE status = 'streaming'", db="postgres")
    assert "sslmode=verify-full" in streaming and f"sslrootcert={REPLICA_CA}" in streaming, streaming
    # the primary's side: one replication connection, a new one (the receiver reconnected), TLS
    deadline = time.monotonic() + 30
    while (now := psql(lab, "postgres", walsenders, db="postgres").split()) and (now == before or len(now) != 1):
        assert time.monotonic() < deadline, (before, now)
        time.sleep(0.5)
    assert len(now) == 1 and now[0].endswith("|true") and now != before, (before, now)  # boolean::text
    rc, said = replication_login(lab, "verify-full", REPLICA_CA)
    assert rc == 0, said
    # verification means something: a root that did not issue the primary's certificate fails
    rc, said = replication_login(lab, "verify-full", "/etc/ssl/certs/ssl-cert-snakeoil.pem")
    assert rc != 0 and "certificate verify failed" in said, said
    # and plain replication is refused by the primary's pg_hba.conf (hostssl replication only)
    rc, said = replication_login(lab, "disable")
    assert rc != 0 and "no pg_hba.conf entry for replication connection" in said and "no encryption" in said, said
    assert ctx.password not in said


def test_plain_logins_to_the_replica_are_refused_and_verified_ones_work(ctx: Ctx) -> None:
    plain = login(ctx.lab, REPLICA, ctx.password, "disable")
    assert "rejects connection" in plain and "no encryption" in plain, plain
    assert login(ctx.lab, REPLICA, ctx.password, "verify-full") == "ok"
    assert ctx.password not in plain


def test_the_database_stored_node_uses_its_config_store_over_verified_tls(ctx: Ctx) -> None:
    lab = ctx.lab
    status = json.loads(lab.ssh("mm2", STATUS).stdout)
    assert status["configStore"]["tlsMode"] == "verify-full" and status["configStore"]["tls"], status["configStore"]
    assert status["configStore"]["target"].startswith(f"postgres://mmuser@{PRIMARY}:5432/mattermost")
    # plain logins of mmuser are refused now: a restart only works over the TLS config-store DSN
    lab.ssh("mm2", "systemctl restart mattermost", timeout=120)
    lab.ssh("mm2", f"i=0; until {PING} >/dev/null; do i=$((i+1)); [ $i -lt 60 ] || exit 1; sleep 0.5; done", timeout=120)
    # Mattermost writes the configuration back without env overrides (Store.Load): the row is the admin's
    assert psql(lab, "postgres", ROWS) == ctx.rows


def test_a_second_up_changes_nothing(ctx: Ctx) -> None:
    ev = replay.up(ROOT, STACK, state_path=ctx.state)
    assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-1500:]}" for s in ev.failed_steps) or ev.program_error
    changed = {s.name: s.op for s in ev.steps if s.op not in ("same", "read")}
    assert changed == {}, changed


def test_destroy_gives_every_byte_back(ctx: Ctx) -> None:
    # the admin first gives the replication link back its seeded conninfo: destroy takes the
    # stack CA and the primary's stack certificate away (README "Read replicas")
    ctx.lab.ssh("pgreplica", seeding.replication_restore_step(), timeout=120)
    assert psql(ctx.lab, "pgreplica", "SHOW primary_conninfo", db="postgres") == ctx.conninfo
    ev = replay.destroy(ROOT, STACK, state_path=ctx.state)
    assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-1500:]}" for s in ev.failed_steps)
    lab = ctx.lab
    for node in ("mm1", "mm2", "mm3"):
        lab.ssh(node, "i=0; until curl -fsS -o /dev/null --max-time 3 http://127.0.0.1:8065/api/v4/system/ping; do i=$((i+1)); [ $i -lt 60 ] || exit 1; sleep 0.5; done", timeout=120)
    assert {h: diff(ctx.before[h], snapshot(lab, h)) for h in HOSTS} == {h: [] for h in HOSTS}
    assert psql(lab, "postgres", ROWS) == ctx.rows
    # and the site works as before: mm1 reads through the replica in clear again
    status = json.loads(lab.ssh("mm1", "curl -fsS http://127.0.0.1:8065/standin/status").stdout)
    assert status["subsystems"]["database"]["replicas"]["replica-0"]["tlsMode"] == "disable"

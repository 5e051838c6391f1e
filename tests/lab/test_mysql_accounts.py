"""Every MariaDB account of the Mattermost user is handled (issue 9), applied by the real program
to the lab's MariaDB stack (stacks/Pulumi.lab-mysql.yaml).

The "before" state is the MariaDB of a manual install that grew: `'mmuser'@'%'` from the
guide, plus `'mmuser'@'10.251.0.102'` (mm2's own account, with its own password and grants) and
`'mmuser'@'localhost'` (a local tool's). MariaDB logs mm2 in through its own account, not '%'
(the most specific host first), so handling '%' alone would leave mm2 with a password the
program never set (its switch fails) and without REQUIRE SSL.

1. An anonymous account with a node's address (`''@'10.251.0.103'`) would win mm3's login:
   the preflight names it and the run stops before any host changed.
2. Without it, `up`: mm2 logs in as 'mmuser'@'10.251.0.102' over verified TLS, and that
   account refuses a plain login on its own (REQUIRE SSL, require_secure_transport off);
   'mmuser'@'localhost' is left as it was.
3. `destroy` gives each account back exactly its definition (password hash, REQUIRE, grants),
   and the hosts' files byte for byte.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import replay
from lab.hosts import Lab
from tests.helpers.lab import OrderedCtx, diff, snapshot

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
STACK = "lab-mysql"
MM2, MM3 = "10.251.0.102", "10.251.0.103"
VERSION_FILE = "/opt/mattermost/bin/mmstandin/VERSION"
HOSTS = ("mm1", "mm2", "mm3", "mariadb", "proxy")
SQL = "mysql --protocol=socket -N -B -r -e"


def sql(lab: Lab, statement: str) -> str:
    return lab.ssh("mariadb", f"{SQL} {shlex.quote(statement)}").stdout.strip()


def accounts(lab: Lab) -> dict[str, str]:
    """Each account of mmuser: its definition (hash, plugin, REQUIRE) and its grants."""
    hosts = sql(lab, "SELECT Host FROM mysql.user WHERE User = 'mmuser' ORDER BY Host").splitlines()
    return {
        h: sql(lab, f"SHOW CREATE USER 'mmuser'@'{h}'") + "\n" + sql(lab, f"SHOW GRANTS FOR 'mmuser'@'{h}'")
        for h in hosts
    }


ACCOUNTS_PASSWORD = "Lab-accounts-Pw-1"


class Ctx(OrderedCtx):
    def __init__(self, lab: Lab, state: Path):
        super().__init__(lab, state)
        self.accounts: dict[str, str] = {}
        self.dsn = ""


@pytest.fixture(scope="module")
def ctx(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    lab.down()
    lab.up(nodes=3, extra=[])
    c = Ctx(lab, tmp_path_factory.mktemp("state") / "lab-mysql.json")
    sql(
        lab,
        f"CREATE USER 'mmuser'@'{MM2}' IDENTIFIED BY 'mm2-own-password';"
        f"GRANT ALL PRIVILEGES ON mattermost.* TO 'mmuser'@'{MM2}';"
        "CREATE USER 'mmuser'@'localhost' IDENTIFIED BY 'local-tool-password';"
        "GRANT SELECT ON mattermost.* TO 'mmuser'@'localhost';",
    )
    # MySQL ended with v10: the nodes' stand-ins report the stack's version (as test_lifecycle does)
    own = {n: lab.ssh(n, f"cat {VERSION_FILE}").stdout for n in ("mm1", "mm2", "mm3")}
    for n in own:
        lab.ssh(n, f"printf '10.11.3\\n' > {VERSION_FILE}")
    for host in HOSTS:
        c.before[host] = snapshot(lab, host)
    c.accounts = accounts(lab)
    assert set(c.accounts) == {"%", MM2, "localhost"}
    try:
        yield c
    finally:
        if c.state.exists() and '"resources"' in c.state.read_text():
            replay.destroy(ROOT, STACK, state_path=c.state)
        for n, text in own.items():
            lab.ssh(n, f"printf '%s\\n' {shlex.quote(text.strip())} > {VERSION_FILE}")
        lab.up(nodes=3, extra=[])


def test_an_anonymous_account_that_would_win_a_login_stops_the_run_before_any_change(ctx: Ctx) -> None:
    lab = ctx.lab
    sql(lab, f"CREATE USER ''@'{MM3}' IDENTIFIED BY 'anonymous-pw'")
    # its own interpreter, as each `pulumi up` runs: a refused program's failed registrations can
    # outlive it in Pulumi's process-wide runtime (seen under mocks, tests/program/test_database.py)
    script = (
        "import json, sys\n"
        "from lab import replay\n"
        f"ev = replay.up({str(ROOT)!r}, {STACK!r}, state_path={str(ctx.state)!r})\n"
        "from tests.helpers.lab import runs_on_host\n"
        "steps = [[s.name, s.op, s.type] for s in ev.steps]\n"
        "print(json.dumps({'error': ev.program_error, 'steps': steps, 'runs': sorted(runs_on_host(ev))}))\n"
    )
    try:
        res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        out = json.loads(res.stdout.strip().splitlines()[-1])
        error = out["error"]
        assert error, "the run must stop"
        assert f"node mm3 ({MM3}) would log in as the anonymous account ''@'{MM3}', ahead of 'mmuser'@'%'" in error
        assert f"DROP USER ''@'{MM3}'" in error
        # (a command without a create, such as a node host's `<helper>-copy`, runs nothing on `up`)
        ran = {name for name, op, typ in out["steps"] if op != "same" and typ == "command:remote:Command"} & set(out["runs"])
        assert "database-accounts" in ran
        # only the read-only checks ran on a host: no helper, no file, no database change (but the
        # copy of the helper each node host's preflight reads its check from, in the user's home)
        assert {n for n in ran if not n.endswith(("-preflight", "database-accounts"))} == set(), ran
    finally:
        sql(lab, f"DROP USER ''@'{MM3}'")
    # the fix the refusal names: read the accounts again (`pulumi up --replace <its URN>`); for a
    # read-only command with no delete, forgetting it in the state is what that replace amounts to
    state = json.loads(ctx.state.read_text())
    state["resources"] = [r for r in state["resources"] if not r["urn"].endswith("::database-accounts")]
    ctx.state.write_text(json.dumps(state))
    for host in HOSTS:
        assert diff(ctx.before[host], snapshot(lab, host)) == [], host
    assert accounts(lab) == ctx.accounts


def test_up_handles_the_account_each_node_logs_in_through(ctx: Ctx) -> None:
    lab = ctx.lab
    # the stack file rotates (a new login 'mmuser_<x>'@'%' the nodes move to); the accounts of
    # `mmuser` itself are what this test is about, so the password is given instead
    ev = replay.up(ROOT, STACK, state_path=ctx.state, config={"dbPassword": replay.Secret(ACCOUNTS_PASSWORD)})
    assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-1500:]}" for s in ev.failed_steps) or ev.program_error
    ctx.dsn = ev.outputs["mattermostDsn"]
    for h in ("%", MM2):
        assert "REQUIRE SSL" in sql(lab, f"SHOW CREATE USER 'mmuser'@'{h}'"), h
    assert accounts(lab)["localhost"] == ctx.accounts["localhost"], "no node logs in through it: left alone"
    # mm2 logs in through its own account, with the site's password, over verified TLS
    user, password = ctx.dsn.split("@tcp(")[0].split(":", 1)
    login = (
        f"MYSQL_PWD={shlex.quote(password)} mariadb --no-defaults -h 10.251.0.20 -u {user} -D mattermost -N -B "
        "-e \"SELECT CURRENT_USER(), (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS "
        "WHERE VARIABLE_NAME = 'Ssl_version')\""
    )
    tls = "--ssl-ca=/etc/mattermost-tls/ca.crt --ssl-verify-server-cert"
    r = lab.ssh("mm2", f"{login} {tls}")
    current, version = r.stdout.split()
    assert current == f"mmuser@{MM2}" and version.startswith("TLSv1."), r.stdout
    r = lab.ssh("mm1", f"{login} {tls}")
    assert r.stdout.split()[0] == "mmuser@%", r.stdout
    # the account's own REQUIRE SSL refuses a plain login, even with require_secure_transport off
    sql(lab, "SET GLOBAL require_secure_transport = OFF")
    try:
        r = lab.ssh("mm2", f"{login} --skip-ssl", check=False)
        assert r.returncode != 0 and "Access denied" in r.stderr, r.stdout + r.stderr
    finally:
        sql(lab, "SET GLOBAL require_secure_transport = ON")


def test_destroy_gives_each_account_back_what_it_had(ctx: Ctx) -> None:
    lab = ctx.lab
    ev = replay.destroy(ROOT, STACK, state_path=ctx.state)
    assert ev.ok, [f"{s.name}: {s.error[-1500:]}" for s in ev.failed_steps]
    assert accounts(lab) == ctx.accounts, "hash, plugin, REQUIRE and grants of every account as before"
    for host in HOSTS:
        assert diff(ctx.before[host], snapshot(lab, host)) == [], host

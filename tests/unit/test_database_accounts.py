"""Which MySQL/MariaDB account each node logs in through (components/database_accounts.py): the
pure choice, then the same choice made by a real MariaDB (the throwaway server of
test_database_render), and the rendered SQL run against it with a '%' and a host-specific
account: both get the password and REQUIRE SSL, and the restore gives each account back exactly
what it had."""

from __future__ import annotations

import pytest

from components import database_render as r
from components.database_accounts import (
    Account,
    AccountError,
    host_matches,
    like,
    login_account,
    magic_sort,
    parse_accounts,
    plan_hosts,
    render_accounts_read,
    render_require_ssl_sql,
)
from components.remote_files_render import strict
from tests.helpers.db_servers import Server
from tests.helpers.scripts import run_script

NODES = {"mm1": "10.251.0.11", "mm2": "10.251.0.12", "mm3": "10.251.0.13"}


def acc(*names: str) -> list[Account]:
    out = []
    for n in names:
        user, host = n.split("@")
        out.append(Account(user, host))
    return out


def plan(accounts: list[Account], skip: bool = True) -> list[str]:
    return plan_hosts(accounts, user="mmuser", clients=NODES, skip_name_resolve=skip)


# ---------------------------------------------------------------- pure


def test_only_the_wildcard_account_is_the_old_behaviour() -> None:
    assert plan(acc("mmuser@%")) == ["%"]
    assert plan([]) == ["%"], "no account yet: '%' is created, as before"


def test_a_host_specific_account_wins_for_its_node_and_is_handled_too() -> None:
    accounts = acc("mmuser@%", "mmuser@10.251.0.12")
    assert login_account(accounts, "mmuser", "10.251.0.12") == Account("mmuser", "10.251.0.12")
    assert login_account(accounts, "mmuser", "10.251.0.11") == Account("mmuser", "%")
    assert plan(accounts) == ["%", "10.251.0.12"]


@pytest.mark.parametrize(
    "specific,general",
    [
        ("10.251.0.12", "10.251.0.%"),
        ("10.251.0.%", "10.251.%"),
        ("10.251.%", "%"),
        ("10.251.0.1_", "10.251.0.%"),
        ("10.251.0.0/255.255.255.0", "10.251.0.%"),
        ("10.251.0.12", "%"),
    ],
)
def test_the_more_specific_host_wins_whichever_comes_first(specific: str, general: str) -> None:
    for order in ((specific, general), (general, specific)):
        accounts = [Account("mmuser", h) for h in order]
        assert login_account(accounts, "mmuser", "10.251.0.12") == Account("mmuser", specific)
    assert magic_sort(Account("mmuser", specific)) < magic_sort(Account("mmuser", general))


def test_for_the_same_host_the_named_user_wins_over_the_anonymous_one() -> None:
    accounts = acc("@10.251.0.%", "mmuser@10.251.0.%")
    assert login_account(accounts, "mmuser", "10.251.0.11") == Account("mmuser", "10.251.0.%")
    assert plan(acc("@%", "mmuser@%")) == ["%"]


def test_an_anonymous_account_with_a_more_specific_host_is_refused_naming_it() -> None:
    with pytest.raises(AccountError) as e:
        plan(acc("mmuser@%", "@10.251.0.13"))
    msg = str(e.value)
    assert "node mm3 (10.251.0.13) would log in as the anonymous account ''@'10.251.0.13'" in msg
    assert "ahead of 'mmuser'@'%'" in msg and "DROP USER ''@'10.251.0.13'" in msg
    assert "create 'mmuser'@'10.251.0.13'" in msg and "nothing was changed" in msg
    assert "pulumi up --replace <URN of database-accounts>" in msg, "a plain up would reuse this read"


def test_a_host_name_account_is_refused_only_while_names_are_resolved() -> None:
    accounts = acc("mmuser@%", "mmuser@mm1.lab.internal")
    with pytest.raises(AccountError, match=r"'mmuser'@'mm1\.lab\.internal', whose host is a name.*skip_name_resolve"):
        plan(accounts, skip=False)
    assert plan(accounts, skip=True) == ["%"], "with skip_name_resolve a name never matches a client"
    assert plan(acc("mmuser@%", "mmuser@localhost", "mmuser@127.0.0.1"), skip=False) == ["%"], "local only"


def test_a_node_without_any_matching_account_gets_the_wildcard_one() -> None:
    assert plan(acc("mmuser@10.251.0.11")) == ["%", "10.251.0.11"]


def test_host_patterns_match_like_the_server() -> None:
    assert like("10.251.0.%", "10.251.0.11") and not like("10.251.0.%", "10.251.1.11")
    assert like("10.251.0.1_", "10.251.0.12") and not like("10.251.0.1_", "10.251.0.1")
    assert like("10.251.0.1\\_", "10.251.0.1_") and not like("10.251.0.1\\_", "10.251.0.12")
    assert host_matches("10.251.0.0/255.255.255.0", "10.251.0.200")
    assert not host_matches("10.251.0.0/255.255.255.0", "10.251.1.2")
    assert not host_matches("localhost", "127.0.0.1"), "TCP from another host never resolves to localhost"


def test_accounts_read_output_round_trips() -> None:
    out = "skip_name_resolve 0\n" + "\n".join(
        f"{a.user.encode().hex().upper()}\t{a.host.encode().hex().upper()}" for a in acc("mmuser@%", "@10.1.2.3")
    )
    assert parse_accounts(out + "\n") == (acc("mmuser@%", "@10.1.2.3"), False)
    with pytest.raises(AccountError):
        parse_accounts("")


# ---------------------------------------------------------------- a real MariaDB decides the same


def _login_user(srv: Server, password: str) -> str:
    """CURRENT_USER() of a TCP login of mmuser from 127.0.0.1, or the server's refusal."""
    # information_schema: every account may use it, the anonymous one too
    res = srv.login("mmuser", password, tls=True, database="information_schema", sql="SELECT CURRENT_USER()")
    return res.stdout.strip() if res.returncode == 0 else "refused"


def _plan_from_server(srv: Server) -> list[str]:
    res = run_script(render_accounts_read(user="mmuser", client=srv.control.local_sql))
    assert res.returncode == 0, res.stderr
    found, skip = parse_accounts(res.stdout)
    return plan_hosts(found, user="mmuser", clients={"local": "127.0.0.1"}, skip_name_resolve=skip)


@pytest.mark.parametrize("tls_on", ["mysql_server"], indirect=True)
def test_mariadb_picks_the_account_the_plan_picks(tls_on: Server) -> None:
    srv = tls_on
    srv.admin("CREATE USER 'mmuser'@'127.0.0.%' IDENTIFIED BY 'specific-pw'")
    try:
        # the server takes the specific account: '%' with its own password no longer gets in
        assert _login_user(srv, "specific-pw") == "mmuser@127.0.0.%"
        assert _login_user(srv, "before-pw") == "refused"
        assert _plan_from_server(srv) == ["%", "127.0.0.%"]
        srv.admin("CREATE USER ''@'127.0.0.1' IDENTIFIED BY 'anon-pw'")
        try:
            # an anonymous account with a more specific host wins over both named ones
            assert _login_user(srv, "anon-pw") == "@127.0.0.1"
            assert _login_user(srv, "specific-pw") == "refused"
            with pytest.raises(AccountError, match=r"anonymous account ''@'127\.0\.0\.1', ahead of"):
                _plan_from_server(srv)
        finally:
            srv.admin("DROP USER ''@'127.0.0.1'")
        srv.admin("CREATE USER ''@'127.0.0.%' IDENTIFIED BY 'anon-pw'")
        try:
            assert _login_user(srv, "specific-pw") == "mmuser@127.0.0.%", "same host: the named user first"
            assert _plan_from_server(srv) == ["%", "127.0.0.%"]
        finally:
            srv.admin("DROP USER ''@'127.0.0.%'")
    finally:
        srv.admin("DROP USER 'mmuser'@'127.0.0.%'")


def _accounts_state(srv: Server) -> dict[str, str]:
    hosts = srv.admin("SELECT Host FROM mysql.user WHERE User = 'mmuser' ORDER BY Host").splitlines()
    return {
        h: srv.admin(f"SHOW CREATE USER 'mmuser'@'{h}'") + "\n" + srv.admin(f"SHOW GRANTS FOR 'mmuser'@'{h}'")
        for h in hosts
    }


@pytest.mark.parametrize("tls_on", ["mysql_server"], indirect=True)
def test_every_account_the_nodes_use_needs_tls_and_gets_back_what_it_had(tls_on: Server) -> None:
    srv = tls_on
    srv.admin(
        "CREATE USER 'mmuser'@'127.0.0.1' IDENTIFIED BY 'specific-pw' REQUIRE SSL WITH MAX_USER_CONNECTIONS 40;"
        "GRANT SELECT ON mattermost.* TO 'mmuser'@'127.0.0.1';"
        "CREATE USER 'mmuser'@'localhost' IDENTIFIED BY 'local-pw'"
    )
    before = _accounts_state(srv)
    try:
        hosts = _plan_from_server(srv)
        assert hosts == ["%", "127.0.0.1"], "localhost is no TCP client's account"
        sql = "".join(
            r.render_user_sql("mysql", user="mmuser", database="mattermost", password="new pw", host=h) for h in hosts
        )
        apply = strict(r.render_user_apply("mysql", user="mmuser", database="mattermost", client=srv.control.local_sql, state_dir=srv.state))
        res = run_script(apply, r.user_stdin("tok", "", sql))
        assert res.returncode == 0, res.stdout + res.stderr
        assert "previous state of 3 account(s) saved" in res.stdout
        assert _login_user(srv, "new pw") == "mmuser@127.0.0.1", "the node's own account has the site's password"
        res = srv.enforce_apply(hosts=tuple(hosts))
        assert res.returncode == 0, res.stdout + res.stderr
        saved = sorted(open(f"{srv.state}/db-user-mmuser.require").read().splitlines())
        assert saved == [
            "ALTER USER 'mmuser'@'%' REQUIRE NONE;",
            "ALTER USER 'mmuser'@'127.0.0.1' REQUIRE SSL;",
        ]
        for h in hosts:
            assert "REQUIRE SSL" in srv.admin(f"SHOW CREATE USER 'mmuser'@'{h}'"), h
        assert "REQUIRE" not in srv.admin("SHOW CREATE USER 'mmuser'@'localhost'"), "not a node's account: left"
        # REQUIRE SSL on the account the node really uses refuses its plain login by itself
        srv.admin("SET GLOBAL require_secure_transport = OFF")
        try:
            plain = srv.login("mmuser", "new pw", tls=False)
            assert plain.returncode != 0, plain.stdout
        finally:
            srv.admin("SET GLOBAL require_secure_transport = ON")
        # running phase 2 again keeps the true original flags
        assert srv.enforce_apply(hosts=tuple(hosts)).returncode == 0
        assert sorted(open(f"{srv.state}/db-user-mmuser.require").read().splitlines()) == saved
        # destroy: phase 2 gives each account its REQUIRE back, then the user's backup the rest
        res = srv.enforce_restore()
        assert res.returncode == 0, res.stdout + res.stderr
        assert "REQUIRE SSL" in srv.admin("SHOW CREATE USER 'mmuser'@'127.0.0.1'"), "its own flags back"
        assert "REQUIRE" not in srv.admin("SHOW CREATE USER 'mmuser'@'%'")
        res = srv.user_restore("mmuser", "tok")
        assert res.returncode == 0, res.stdout + res.stderr
        assert _accounts_state(srv) == before, "every account as it was: hash, flags, grants"
    finally:
        srv.admin("DROP USER IF EXISTS 'mmuser'@'127.0.0.1'; DROP USER IF EXISTS 'mmuser'@'localhost'")


def test_require_ssl_sql_names_each_planned_account_once() -> None:
    previous, require = render_require_ssl_sql("mmuser", ["%", "10.0.0.5", "it's"])
    assert "Host IN ('%', '10.0.0.5', 'it''s')" in previous
    assert require.splitlines() == [
        "ALTER USER 'mmuser'@'%' REQUIRE SSL;",
        "ALTER USER 'mmuser'@'10.0.0.5' REQUIRE SSL;",
        "ALTER USER 'mmuser'@'it''s' REQUIRE SSL;",
    ]

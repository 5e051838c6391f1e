"""The stand-in's database access behaves like Go's database/sql pool as Mattermost configures it
(server/public/utils/sql/sql_utils.go SetupConnection): connections past ConnMaxLifetime or
ConnMaxIdleTime are closed and replaced by NEW logins, MaxIdleConns bounds what is kept, and the
ping with get_server_status=true (server/channels/api4/system.go getSystemPing) writes and deletes
a Systems row through that pool. Against a throwaway real PostgreSQL on loopback: changing the
user's password breaks the node's next login, as it would break a real node's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.standin.mmstandin import database, dsn, web
from lab.standin.mmstandin.config import Config
from lab.standin.mmstandin.runtime import Context, Logger
from tests.helpers.db_servers import Server

PW = "before-pw"


def _ctx(srv: Server, **pool: int) -> Context:
    data = {
        "SqlSettings": {
            "DriverName": "postgres",
            "DataSource": f"postgres://mmuser:{PW}@127.0.0.1:{srv.port}/mattermost?sslmode=disable&connect_timeout=5",
            **pool,
        }
    }
    return Context(config=Config(path="-", data=data), log=Logger("fatal"))


@pytest.fixture
def db(pg_server: Server) -> Iterator[tuple[Server, database.Database]]:
    ctx = _ctx(pg_server, MaxIdleConns=2, ConnMaxLifetimeMilliseconds=400, ConnMaxIdleTimeMilliseconds=300)
    d = database.create(ctx)
    d.start()
    ctx.subsystems["database"] = d
    try:
        yield pg_server, d
    finally:
        ctx.stopping.set()
        d.stop()
        pg_server.admin(f"ALTER ROLE mmuser PASSWORD '{PW}'")


def test_connections_past_their_lifetime_are_replaced_by_new_logins(db: tuple[Server, database.Database]) -> None:
    srv, d = db
    opened = d.pool.stats()["opened"]
    d.query("SELECT 1")
    assert d.pool.stats()["opened"] == opened, "an idle connection within its lifetime is reused"
    time.sleep(0.5)
    d.query("SELECT 1")
    stats = d.pool.stats()
    assert stats["opened"] == opened + 1 and stats["maxLifetimeClosed"] >= 1, stats


def test_a_password_change_breaks_the_next_login_not_the_idle_connection(db: tuple[Server, database.Database]) -> None:
    srv, d = db
    d.query("SELECT 1")
    srv.admin("ALTER ROLE mmuser PASSWORD 'rotated-under-its-feet'")
    d.query("SELECT 1")  # the idle connection was authenticated before: database/sql keeps using it
    time.sleep(0.5)  # past ConnMaxLifetime: the pool must log in again, with the old password
    with pytest.raises(Exception, match="password authentication failed"):
        d.query("SELECT 1")
    code, body = web.ping_response(d.ctx, {"get_server_status": ["true"]})
    assert (code, body["status"], body["database_status"]) == (500, "UNHEALTHY", "UNHEALTHY")
    assert web.ping_response(d.ctx, {}) == (200, web.ping_response(d.ctx, {})[1]), "the bare ping needs no database"


def test_the_idle_cleaner_closes_idle_connections(db: tuple[Server, database.Database]) -> None:
    srv, d = db
    d.query("SELECT 1")
    assert d.pool.stats()["idle"] == 1
    time.sleep(0.35)
    d.pool.clean()
    assert d.pool.stats()["idle"] == 0 and d.pool.stats()["maxIdleTimeClosed"] >= 1


def test_max_idle_zero_logs_in_for_every_query(pg_server: Server) -> None:
    ctx = _ctx(pg_server, MaxIdleConns=0, ConnMaxLifetimeMilliseconds=0, ConnMaxIdleTimeMilliseconds=0)
    d = database.create(ctx)
    d.start()
    try:
        before = d.pool.stats()["opened"]
        for _ in range(3):
            d.query("SELECT 1")
        assert d.pool.stats()["opened"] == before + 3 and d.pool.stats()["idle"] == 0
    finally:
        d.stop()


def test_the_server_status_ping_writes_and_deletes_its_row(db: tuple[Server, database.Database]) -> None:
    srv, d = db
    code, body = web.ping_response(d.ctx, {"get_server_status": ["true"]})
    assert (code, body["status"], body["database_status"]) == (200, "OK", "OK")
    assert d.query("SELECT count(*) FROM Systems WHERE Name LIKE 'health_check_%%'") == [(0,)]
    # Go compares the form value to "true" exactly
    assert "database_status" not in web.ping_response(d.ctx, {"get_server_status": ["True"]})[1]


def test_a_broken_idle_connection_is_retried_on_a_new_one(db: tuple[Server, database.Database]) -> None:
    srv, d = db
    d.query("SELECT 1")
    srv.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'mmuser' AND pid <> pg_backend_pid()")
    time.sleep(0.1)
    assert d.query("SELECT 1") == [(1,)], "database/sql retries a bad connection on another"


def test_dsn_target_hides_the_password() -> None:
    t = dsn.parse("postgres", "postgres://u:secret@h/db?sslmode=disable")
    assert "secret" not in repr(t) and "secret" not in t.describe()


def test_system_roots_are_read_once_per_process_as_go_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CA added to the trust store after start is not trusted until a restart (Go's
    systemRootsPool); reading the store at every login was kinder than Mattermost."""
    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_text("old CA\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    database.system_roots.cache_clear()
    try:
        assert database.system_roots() == "old CA\n"
        bundle.write_text("old CA\nnew CA\n")
        assert database.system_roots() == "old CA\n"
        database.system_roots.cache_clear()  # a restarted process
        assert database.system_roots() == "old CA\nnew CA\n"
    finally:
        database.system_roots.cache_clear()  # the next caller reads this process's real store

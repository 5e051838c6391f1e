"""The stand-in keeps its configuration in the database like Mattermost's database config store
(server/config/database.go, store.go) and reads through DataSourceReplicas /
DataSourceSearchReplicas pools (server/channels/store/sqlstore/store.go initConnection,
GetReplicaX). Against a throwaway real PostgreSQL on loopback."""

from __future__ import annotations

import json

import pytest

from lab.standin.mmstandin import config as cfgmod
from lab.standin.mmstandin import database, dbstore, web
from lab.standin.mmstandin.runtime import Context, Logger, StartupError
from tests.helpers.db_servers import Server

PW = "before-pw"


def _dsn(srv: Server, db: str = "mattermost", **q: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"sslmode": "disable", "connect_timeout": "5", **q}.items())
    return f"postgres://mmuser:{PW}@127.0.0.1:{srv.port}/{db}?{query}"


def _sql(srv: Server, sql: str, db: str = "mattermost") -> str:
    """SQL as the local superuser in database `db` (Server.admin runs in `postgres`)."""
    import subprocess

    res = subprocess.run(
        [*srv.control.local_sql.replace("-d postgres", f"-d {db}").split(), "-At", "-c", sql],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def _rows(srv: Server) -> list[str]:
    return _sql(srv, "SELECT Id || ' ' || coalesce(Active::text, '-') || ' ' || SHA FROM Configurations ORDER BY CreateAt").split()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("mysql://mmuser:pw@tcp(db:3306)/mattermost?tls=true", ("mysql", "mmuser:pw@tcp(db:3306)/mattermost?tls=true")),
        ("postgres://u:p@h/db?sslmode=verify-full", ("postgres", "postgres://u:p@h/db?sslmode=verify-full")),
        ("postgresql://u:p@h/db", ("postgres", "postgresql://u:p@h/db")),
    ],
)
def test_the_dsn_is_split_as_parsedsn_does(source: str, expected: tuple[str, str]) -> None:
    assert dbstore.is_database_dsn(source)
    assert dbstore.parse_store_dsn(source) == expected


def test_files_and_other_schemes_are_not_database_stores() -> None:
    assert not dbstore.is_database_dsn("/opt/mattermost/config/config.json")
    assert not dbstore.is_database_dsn("config.json")
    with pytest.raises(dbstore.StoreError, match="unsupported scheme sqlite"):
        dbstore.parse_store_dsn("sqlite://x")


def test_the_config_lives_in_the_active_row_and_env_never_reaches_it(pg_server: Server) -> None:
    srv = pg_server
    _sql(srv, "DROP TABLE IF EXISTS Configurations")
    source = _dsn(srv)
    # no active row: Load starts from the driver name and this DSN, and Store.Load persists it
    first = cfgmod.load(source, environ={"MM_SERVICESETTINGS_SITEURL": "https://env.example"})
    assert first.get("SqlSettings", "DataSource") == source
    assert first.get("ServiceSettings", "SiteURL") == "https://env.example"
    assert PW not in first.path, "the config's description never carries the password"
    assert len(_rows(srv)) == 3  # one row: id, active, sha
    stored = json.loads(_sql(srv, "SELECT Value FROM Configurations WHERE Active"))
    assert stored["ServiceSettings"]["SiteURL"] == "", "an env override must not be written to the row"
    # a second start with the same stored config writes nothing (same SHA)
    before = _rows(srv)
    cfgmod.load(source, environ={"MM_SQLSETTINGS_DATASOURCEREPLICAS": "postgres://x@y/z"})
    assert _rows(srv) == before
    # an admin's new active row is what the next start reads
    stored["ServiceSettings"]["SiteURL"] = "https://row.example"
    store = dbstore.DatabaseStore(source)
    assert store.persist(stored)
    rows = _rows(srv)
    assert len(rows) == 6 and rows[1] == "-" and rows[4] == "true", rows
    assert cfgmod.load(source, environ={}).get("ServiceSettings", "SiteURL") == "https://row.example"


def test_a_store_the_server_refuses_stops_the_start(pg_server: Server) -> None:
    bad = _dsn(pg_server).replace(PW, "wrong-password")
    with pytest.raises(cfgmod.ConfigError, match="failed to create store") as err:
        cfgmod.load(bad, environ={})
    assert "wrong-password" not in str(err.value)


def _ctx(srv: Server, replicas: list[str], search: list[str] | None = None) -> Context:
    data = {
        "SqlSettings": {
            "DriverName": "postgres",
            "DataSource": _dsn(srv),
            "DataSourceReplicas": replicas,
            "DataSourceSearchReplicas": search or [],
            "MaxIdleConns": 0,
        }
    }
    return Context(config=cfgmod.Config(path="-", data=data), log=Logger("fatal"))


def test_reads_go_through_every_replica_pool(pg_server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # the loopback server plays the replica too: a second database name tells the pools apart
    ctx = _ctx(pg_server, [_dsn(pg_server, "mmnewdb"), _dsn(pg_server)], [_dsn(pg_server, "mmnewdb")])
    pg_server.admin("GRANT CONNECT ON DATABASE mmnewdb TO mmuser")
    _sql(pg_server, "CREATE TABLE IF NOT EXISTS Systems (Name VARCHAR(64) PRIMARY KEY, Value VARCHAR(1024))", "mmnewdb")
    _sql(pg_server, "GRANT SELECT ON Systems TO mmuser", "mmnewdb")
    d = database.create(ctx)
    d.start()
    ctx.subsystems["database"] = d
    try:
        for _ in range(4):
            code, body = web.ping_response(ctx, {"get_server_status": ["true"]})
            assert (code, body["status"]) == (200, "OK"), body
        opened = {name: r["pool"]["opened"] for name, r in d.status()["replicas"].items()}
        # MaxIdleConns 0: every read is a new login; 4 pings + the startup ping on each pool
        assert opened == {"replica-0": 3, "replica-1": 3, "search-replica-0": 5}, opened
    finally:
        ctx.stopping.set()
        d.stop()


def test_an_unreachable_replica_stops_the_start(pg_server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "PING_ATTEMPTS", 2)
    monkeypatch.setattr(database, "PING_INTERVAL", 0.05)
    ctx = _ctx(pg_server, [_dsn(pg_server).replace(f":{pg_server.port}/", ":1/")])
    d = database.create(ctx)
    with pytest.raises(StartupError, match=r"Failed to ping DB \(replica-0\) after 2 attempts"):
        d.start()
    d.stop()


def test_a_replica_that_goes_away_fails_the_read_no_fallback(pg_server: Server) -> None:
    ctx = _ctx(pg_server, [_dsn(pg_server)])
    d = database.create(ctx)
    d.start()
    ctx.subsystems["database"] = d
    try:
        d.replicas[0][1].target = d.replicas[0][1].target.__class__(
            **{**d.replicas[0][1].target.__dict__, "port": 1}
        )
        code, body = web.ping_response(ctx, {"get_server_status": ["true"]})
        assert (code, body["status"], body["database_status"]) == (500, "UNHEALTHY", "UNHEALTHY")
    finally:
        ctx.stopping.set()
        d.stop()

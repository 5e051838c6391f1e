"""Pure decisions for the node's replica and config-store DSNs (components/db_replicas_render.py),
and the config-store preflight RUN against a throwaway PostgreSQL holding a Configurations table."""

from __future__ import annotations

import json
import subprocess

import pytest

from components import database_render as r
from components import db_replicas_render as rr
from tests.helpers.db_servers import Server
from tests.helpers.scripts import run_script

PW = "Secret-pw_1"


def pg(host: str) -> str:
    return r.render_dsn("postgres", "mmuser", PW, host, 5432, "mattermost", "verify-full", "/etc/mattermost-tls/ca.crt")


def test_replica_dsns_carry_the_same_verification_as_the_main_dsn() -> None:
    env = rr.node_db_env(engine="postgres", data_source=pg("db"), replicas=[pg("r1"), pg("r2")], search_replicas=[pg("s1")], config_store="file")
    assert env == {
        "MM_SQLSETTINGS_DATASOURCEREPLICAS": f"{pg('r1')} {pg('r2')}",
        "MM_SQLSETTINGS_DATASOURCESEARCHREPLICAS": pg("s1"),
    }
    # applyEnvKey splits list settings on single spaces: the list comes back exactly
    assert env["MM_SQLSETTINGS_DATASOURCEREPLICAS"].split(" ") == [pg("r1"), pg("r2")]
    for dsn in env["MM_SQLSETTINGS_DATASOURCEREPLICAS"].split(" "):
        assert "sslmode=verify-full&sslrootcert=/etc/mattermost-tls/ca.crt" in dsn


def test_no_managed_replicas_sets_no_list_so_the_nodes_own_stay() -> None:
    assert rr.node_db_env(engine="postgres", data_source=pg("db"), replicas=[], search_replicas=[], config_store="file") == {}
    with pytest.raises(ValueError, match="empty replica list"):
        rr.env_list([])


def test_a_dsn_with_whitespace_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="replica DSN 1 is empty or contains whitespace") as err:
        rr.env_list([pg("r1"), "postgres://u:pass word@h/db"])
    assert "pass word" not in str(err.value)


@pytest.mark.parametrize(
    ("engine", "dsn", "expected"),
    [
        ("postgres", "postgres://u:p@db:5432/mm?sslmode=verify-full", "postgres://u:p@db:5432/mm?sslmode=verify-full"),
        ("mysql", "u:p@tcp(db:3306)/mm?tls=true", "mysql://u:p@tcp(db:3306)/mm?tls=true"),
    ],
)
def test_mm_config_is_the_main_dsn_as_parsedsn_wants_it(engine: str, dsn: str, expected: str) -> None:
    assert rr.config_store_dsn(engine, dsn) == expected
    env = rr.node_db_env(engine=engine, data_source=dsn, replicas=[], search_replicas=[], config_store="database")
    assert env == {"MM_CONFIG": expected}


def test_config_store_dsn_refuses_what_parsedsn_would_misread() -> None:
    with pytest.raises(ValueError, match="postgres:// URL"):
        rr.config_store_dsn("postgres", "host=db user=u")
    with pytest.raises(ValueError, match="unknown database engine"):
        rr.config_store_dsn("sqlite", "x")
    with pytest.raises(ValueError, match="'file' or 'database'"):
        rr.node_db_env(engine="postgres", data_source=pg("db"), replicas=[], search_replicas=[], config_store="db")


def test_targets_name_user_host_port_and_database_once_each() -> None:
    assert rr.dsn_targets("mmuser", ["db", "10.0.0.1", "db"], 5432, "mattermost") == [
        "mmuser@db:5432/mattermost",
        "mmuser@10.0.0.1:5432/mattermost",
    ]


# ---------------------------------------------------------------- the config-store preflight, run


def _sql(srv: Server, sql: str) -> None:
    res = subprocess.run(
        [*srv.control.local_sql.replace("-d postgres", "-d mattermost").split(), "-c", sql], capture_output=True, text=True, cwd="/"
    )
    assert res.returncode == 0, res.stderr


def _run(srv: Server, **kw: object) -> subprocess.CompletedProcess[str]:
    args: dict[str, object] = {
        "engine": "postgres",
        "local_sql": srv.control.local_sql.replace(" -d postgres", ""),
        "database": "mattermost",
        "address": "10.0.0.21",
        "cluster_enabled": False,
        "accept_pg": "verify-full",
        "replica_targets": ("mmuser@r1:5432/mattermost",),
        "search_targets": (),
    } | kw
    script = "set -eu\n" + rr.render_config_store_preflight(**args)  # type: ignore[arg-type]
    return run_script(script, timeout=60, cwd="/")


def _store(srv: Server, cfg: dict) -> None:
    _sql(srv, "CREATE TABLE IF NOT EXISTS Configurations (Id VARCHAR(26) PRIMARY KEY, Value TEXT NOT NULL, CreateAt BIGINT NOT NULL, Active BOOLEAN NULL UNIQUE, SHA CHAR(64) NOT NULL DEFAULT '')")
    _sql(srv, "DELETE FROM Configurations")
    value = json.dumps(cfg).replace("'", "''")
    _sql(srv, f"INSERT INTO Configurations VALUES ('a', '{value}', 1, TRUE, '')")


def test_the_stored_configuration_is_checked_on_the_database_host(pg_server: Server) -> None:
    _sql(pg_server, "DROP TABLE IF EXISTS Configurations")
    r0 = _run(pg_server)
    assert r0.returncode == 0 and "no stored configuration yet" in r0.stdout, r0.stderr
    listed = f"postgres://mmuser:{PW}@r1:5432/mattermost?sslmode=disable"
    _store(pg_server, {"SqlSettings": {"DataSourceReplicas": [listed]}, "ClusterSettings": {"Enable": False}})
    ok = _run(pg_server)
    assert ok.returncode == 0, ok.stderr
    stray = f"postgres://mmuser:{PW}@r9:5432/mattermost?sslmode=require"
    _store(pg_server, {"SqlSettings": {"DataSourceReplicas": [listed], "DataSourceSearchReplicas": [stray]}, "ClusterSettings": {"Enable": True}})
    bad = _run(pg_server)
    assert bad.returncode == 1
    err = bad.stderr
    assert "database host 10.0.0.21, database mattermost: refusing to go on" in err
    assert "ClusterSettings.Enable is true in the active row of Configurations in database mattermost) while cluster.enabled is false" in err
    assert "SqlSettings.DataSourceSearchReplicas in the active row of Configurations in database mattermost, entry 0 (counted from 0): a PostgreSQL DSN with sslmode=require" in err
    assert "DataSourceReplicas in the active row" not in err
    assert PW not in bad.stdout + err
    assert _run(pg_server, cluster_enabled=True, search_targets=("mmuser@r9:5432/mattermost",)).returncode == 0


def test_a_stored_configuration_that_is_not_json_is_refused(pg_server: Server) -> None:
    _store(pg_server, {})
    _sql(pg_server, "UPDATE Configurations SET Value = '{not json' WHERE Active")
    err = _run(pg_server)
    assert err.returncode == 1 and "the active row of Configurations in database mattermost is not readable JSON" in err.stderr

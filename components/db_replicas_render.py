"""Pure decisions for a node's OTHER database connections: the read replicas
(SqlSettings.DataSourceReplicas / DataSourceSearchReplicas) and the database config store
(MM_CONFIG), each with the same verified TLS as the main DataSource.

How the node gets them: environment variables in the node's own 0600 EnvironmentFile, never an
edit of config.json or of the database-stored configuration row:
- Mattermost applies `MM_*` over the stored config, file or database (server/config/store.go
  Store.Load: applyEnvironmentMap), and writes the config back WITHOUT them
  (removeEnvOverrides / configNoEnv): the row keeps the admin's values, nothing to restore.
- The row is shared by every node: a TLS DSN written there would reach the nodes that have not
  switched yet (no CA, database not yet offering TLS to them) at their next config load. An
  env file is per node and takes effect with that node's own restart, one node at a time.
- `MM_CONFIG` is read from the process environment before any config exists
  (server/cmd/mattermost/commands: getConfigDSN); systemd gives an EnvironmentFile= precedence
  over Environment= and later files over earlier ones, so the program's file (loaded by its
  drop-in, after the unit's own settings) decides. Destroy removes the file: the admin's
  MM_CONFIG is back, byte for byte.

Plain values in, text out: no Pulumi, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from components.config import HostSsh, StackConfig
from components.platform import DEBIAN, Platform
from components.shell import script, template

REPLICAS_ENV = "MM_SQLSETTINGS_DATASOURCEREPLICAS"
SEARCH_REPLICAS_ENV = "MM_SQLSETTINGS_DATASOURCESEARCHREPLICAS"
CONFIG_ENV = "MM_CONFIG"

_LABEL = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class ReplicaServer:
    """One replica server of the stack (it may serve both lists)."""

    address: str
    server_name: str
    ssh: HostSsh = field(compare=False)
    label: str
    """Stable identity for resource names: the inventory host name, else the address."""


def replica_servers(cfg: StackConfig) -> list[tuple[str, ReplicaServer]]:
    """(config key, server) for every distinct replica address, reads first, then search."""
    out: list[tuple[str, ReplicaServer]] = []
    seen: set[str] = set()
    db = cfg.database
    for list_key, replicas in (("database.replicas", db.replicas), ("database.searchReplicas", db.search_replicas)):
        for i, rep in enumerate(replicas):
            if rep.address is None or rep.address in seen:
                continue
            seen.add(rep.address)
            label = rep.host or _LABEL.sub("-", rep.address.lower()).strip("-")
            out.append((f"{list_key}[{i}]", ReplicaServer(rep.address, rep.server_name or rep.address, rep.ssh, label)))
    return out


def dsn_targets(user: str, hosts: Sequence[str], port: int, database: str) -> list[str]:
    """What the node preflight compares a node's DSN with: `user@host:port/db` for each name the
    server answers to (its DSN name and its address), never a password."""
    out: list[str] = []
    for h in hosts:
        word = f"{user}@{h}:{int(port)}/{database}"
        if word not in out:
            out.append(word)
    return out


def env_list(dsns: Sequence[str]) -> str:
    """A list setting as Mattermost's applyEnvKey reads it: strings.Split(value, " "). A DSN with
    a space would be cut in two, so it is refused (the message never shows the DSN)."""
    if not dsns:
        raise ValueError("an empty replica list cannot be set by environment (it would read as one empty DSN)")
    for i, d in enumerate(dsns):
        if not d or any(c.isspace() for c in d):
            raise ValueError(f"replica DSN {i} is empty or contains whitespace, which MM_* list settings split on")
    return " ".join(dsns)


def config_store_dsn(engine: str, data_source: str) -> str:
    """MM_CONFIG for a configuration kept in the stack's database, from the node's TLS
    DataSource (server/config/database.go parseDSN): PostgreSQL takes the lib/pq URL unchanged;
    MySQL takes `mysql://` + the go-sql-driver DSN (parseDSN strips the scheme)."""
    if engine == "postgres":
        if not data_source.startswith(("postgres://", "postgresql://")):
            raise ValueError("a PostgreSQL config-store DSN must be a postgres:// URL")
        return data_source
    if engine == "mysql":
        if "://" in data_source.split("@", 1)[-1].split("/", 1)[0]:
            raise ValueError("a MySQL DataSource has no scheme")
        return "mysql://" + data_source
    raise ValueError(f"unknown database engine {engine!r}")


def node_db_env(
    *, engine: str, data_source: str, replicas: Sequence[str], search_replicas: Sequence[str], config_store: str
) -> dict[str, str]:
    """The node's extra database settings: only what the stack manages (an empty list sets
    nothing, so a node's own TLS-verified replicas stay as they are: the preflight checks them)."""
    env: dict[str, str] = {}
    if replicas:
        env[REPLICAS_ENV] = env_list(replicas)
    if search_replicas:
        env[SEARCH_REPLICAS_ENV] = env_list(search_replicas)
    if config_store == "database":
        env[CONFIG_ENV] = config_store_dsn(engine, data_source)
    elif config_store != "file":
        raise ValueError(f"config store must be 'file' or 'database', not {config_store!r}")
    return env


def render_config_store_preflight(
    *,
    engine: str,
    local_sql: str,
    database: str,
    address: str,
    cluster_enabled: bool,
    accept_pg: str,
    replica_targets: Sequence[str],
    search_targets: Sequence[str],
    platform: Platform = DEBIAN,
) -> str:
    """The read-only check, on the database host, of the configuration stored there
    (templates/config-store-preflight.sh): the settings a node cannot show its preflight."""
    if engine not in ("postgres", "mysql"):
        raise ValueError(f"unknown database engine {engine!r}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", database):
        raise ValueError(f"not a database name: {database!r}")
    params = {
        "engine": engine,
        "database": database,
        "address": address,
        "cluster_enabled": "true" if cluster_enabled else "false",
        "accept_pg": accept_pg,
        "replica_targets": " ".join(replica_targets),
        "search_targets": " ".join(search_targets),
    }
    # local_sql is trusted text built by database_render.server_control (like its other scripts)
    code = {
        "local_sql": local_sql,
        "dsn_checks": template("dsn-checks.sh").removesuffix("\n"),
        # inside a double-quoted message: Platform values are plain text (no $, quotes, `)
        "INSTALL_JQ": platform.install(platform.jq_package),
    }
    return script("config-store-preflight.sh", code=code, **params)

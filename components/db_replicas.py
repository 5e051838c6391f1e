"""DatabaseReplica: a PostgreSQL read replica of the stack's database, with TLS like the primary.

Owns, on one replica host: the server certificate (stack CA, for the replica's DSN name and
address), the conf.d file that turns TLS on and the reload that proves it (the same text and
scripts as the primary's, components/database_render), pg_hba.conf's hostssl block for the nodes
(phase 1) and, once every node uses its TLS DSNs, the block that refuses plain logins of the
Mattermost user (phase 2, `enforce_tls`). A hot standby's configuration files are its own (not
replicated), its roles are the primary's (replicated, read-only there): the user and its
password are the primary's business, so nothing here touches them.

Also owns the node side of the other database connections (`node_db_env`: replica DSNs and the
database-stored configuration's MM_CONFIG, decided in db_replicas_render) and the read-only check
of the stored configuration on the database host (`config_store_preflight`).

Kept apart from components/database.py on purpose: the primary's component changes for other
reasons (roles, accounts, rotation) and this one only reuses its pure renderers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Protocol, TypedDict

import pulumi
from pulumi_command import remote

from components import database_render as r
from components import db_replicas_render as rr
from components.config import Database as DatabaseConfig
from components.config import DatabaseReplica as DatabaseReplicaConfig
from components.database import database_control
from components.database_enforcement import moved_child
from components.pki import Pki, split_sans
from components.remote_files import ManagedFile, managed_block, managed_files, read_script
from components.remote_files_render import FileSpec


class DatabaseLike(Protocol):
    """What node_db_env needs from components.database.Database."""

    password: pulumi.Output[str]
    server_name: str


@dataclass(frozen=True)
class DatabaseReplicaArgs:
    """Inputs of one replica server (built from the stack config by components/adapter.py)."""

    database: DatabaseConfig
    """The validated `database` section (port, dirs, user, database name, host platform)."""
    server: rr.ReplicaServer
    """The replica (address, DSN name, SSH)."""
    connection: remote.ConnectionArgs
    """SSH to the replica host."""
    pki: Pki
    """The stack CA that issues the replica's certificate."""
    client_addresses: list[str]
    """The nodes' addresses: each gets a hostssl line."""


class DatabaseReplica(pulumi.ComponentResource):
    """One read replica serving TLS with the stack CA's certificate (see the module docstring)."""

    ready: list[pulumi.Resource]
    """What the nodes wait for: TLS live on the replica and the hostssl lines."""
    server_cert_expiry: pulumi.Output[str]
    resource_name: str
    """The component's name, which its resources' names start with."""

    def __init__(self, name: str, args: DatabaseReplicaArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mattermost-tls:db_replicas:DatabaseReplica", name, None, opts)
        db, server = args.database, args.server
        self._name = self.resource_name = name
        self._user, self._database, self._port = db.user, db.name, db.effective_port
        self._address = server.address
        self._connection = args.connection
        config_dir = db.effective_config_dir
        self._hba_file = f"{config_dir}/pg_hba.conf"
        paths = r.tls_paths(db.effective_tls_dir)
        config_file = r.server_config_path("postgres", config_dir)
        self._control = control = database_control(db, "postgres")
        svc_user = db.host_platform.server_user("postgres")
        child = pulumi.ResourceOptions(parent=self)

        issued = args.pki.issue_server_cert(f"{name}-server", split_sans([server.server_name, server.address]), parent=self)
        self.server_cert_expiry = issued.cert.validity_end_time
        activate = r.render_pg_reload_activate(
            control,
            config_file=config_file,
            tls_probe=r.render_tls_probe(
                "postgres", address=server.address, port=self._port, ca_file=paths.ca, server_name=server.server_name
            ),
        )
        server_tls = managed_files(
            f"{name}-server-tls",
            connection=self._connection,
            files=[
                ManagedFile(FileSpec(paths.ca, "0644"), args.pki.ca_cert_pem),
                ManagedFile(FileSpec(paths.cert, "0644"), issued.cert_pem),
                ManagedFile(FileSpec(paths.key, "0600", svc_user, svc_user), issued.key_pem),
                ManagedFile(FileSpec(config_file, "0644"), r.render_pg_conf(db.effective_tls_dir)),
            ],
            validate=r.render_validate(
                "postgres", control, config_file=config_file, tls_dir=db.effective_tls_dir, platform=db.host_platform
            ),
            activate=activate,
            restore_activate=activate,
            secret=True,
            opts=child,
        )
        hba = managed_block(
            f"{name}-pg-hba",
            connection=self._connection,
            path=self._hba_file,
            content=r.render_pg_hba_block(db.name, db.user, list(args.client_addresses)),
            position="top",
            validate=r.render_hba_validate(control, hba_file=self._hba_file),
            activate=control.reload,
            restore_activate=control.reload,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[server_tls]),
        )
        self.ready = [server_tls, hba]
        self._enforced: list[pulumi.Resource] | None = None
        self.register_outputs({"server_cert_expiry": self.server_cert_expiry})

    def enforce_tls(self, after: Sequence[pulumi.Resource], parent: pulumi.Resource | None = None) -> list[pulumi.Resource]:
        """Phase 2 on the replica: refuse plain logins of the Mattermost user once every node in
        `after` uses its TLS DSNs (the primary's components/database.py enforce_tls, same text;
        `parent` and the alias as there)."""
        if self._enforced is not None:
            raise RuntimeError(f"{self._name}: enforce_tls() was already called")
        self._enforced = [
            managed_block(
                f"{self._name}-enforce-tls",
                connection=self._connection,
                path=self._hba_file,
                content=r.render_pg_hba_enforce_block(self._user),
                position="top",
                validate=r.render_hba_validate(self._control, hba_file=self._hba_file),
                activate=r.render_pg_enforce_activate(
                    self._control,
                    hba_file=self._hba_file,
                    address=self._address,
                    port=self._port,
                    user=self._user,
                    database=self._database,
                ),
                restore_activate=self._control.reload,
                opts=pulumi.ResourceOptions.merge(
                    moved_child(self, parent), pulumi.ResourceOptions(depends_on=[*after, *self.ready])
                ),
            )
        ]
        return list(self._enforced)


def database_replicas(
    replicas: Sequence[DatabaseReplicaArgs], opts: pulumi.ResourceOptions | None = None
) -> list[DatabaseReplica]:
    """One DatabaseReplica per distinct replica server of the stack (none without replicas), named
    after the server's stable label."""
    return [DatabaseReplica(f"database-replica-{args.server.label}", args, opts) for args in replicas]


@dataclass(frozen=True)
class NodeDbEnvArgs:
    """What `node_db_env` needs of one node and the config (built by components/adapter.py)."""

    database: DatabaseConfig
    """The validated `database` section (engine, user, port, name, TLS mode, replicas)."""
    ca_file: str
    """Where the node keeps the stack CA (the DSNs' sslrootcert)."""
    config_store: str
    """The node's configStore: 'database' adds MM_CONFIG."""


def node_db_env(args: NodeDbEnvArgs, database: DatabaseLike) -> dict[str, pulumi.Output[str]]:
    """The node's replica DSNs and, with configStore database, its MM_CONFIG: secret Outputs for
    the node's EnvironmentFile (MattermostNodeArgs.extra_env). Same user, password, database and
    TLS verification as the node's main DataSource; `sslrootcert` is the node's CA file."""
    db, ca_file, store = args.database, args.ca_file, args.config_store
    engine = db.engine
    hosts = {
        "replicas": [rep.server_name or rep.address for rep in db.replicas],
        "search": [rep.server_name or rep.address for rep in db.search_replicas],
    }

    def render(pw: str) -> dict[str, str]:
        def dsn(host: str) -> str:
            return r.render_dsn(engine, db.user, pw, host, db.effective_port, db.name, db.effective_tls_mode, ca_file)

        return rr.node_db_env(
            engine=engine,
            data_source=dsn(database.server_name),
            replicas=[dsn(h) for h in hosts["replicas"] if h],
            search_replicas=[dsn(h) for h in hosts["search"] if h],
            config_store=store,
        )

    # the names are known without the password: one Output per variable, all secret
    names = sorted(rr.node_db_env(
        engine=engine,
        data_source="postgres://-" if engine == "postgres" else "-@tcp(-)/-",
        replicas=["-"] * len(db.replicas),
        search_replicas=["-"] * len(db.search_replicas),
        config_store=store,
    ))
    values = database.password.apply(render)
    return {k: pulumi.Output.secret(values.apply(itemgetter(k))) for k in names}


class PreflightTargets(TypedDict):
    """render_preflight_script's target arguments, typed so they can be passed as **kwargs."""

    store_targets: list[str]
    replica_targets: list[str]
    search_targets: list[str]


def database_targets(db: DatabaseConfig) -> PreflightTargets:
    """What the node preflight compares the node's DSNs with (render_preflight_script), from the
    `database` section: plain values in and out."""
    assert db.address is not None  # the schema requires it

    def targets(hosts: list[str]) -> list[str]:
        return rr.dsn_targets(db.user, hosts, db.effective_port, db.name)

    def of(replicas: list[DatabaseReplicaConfig]) -> list[str]:
        return [t for rep in replicas if rep.address for t in targets([rep.server_name or rep.address, rep.address])]

    return {
        "store_targets": targets([db.server_name or db.address, db.address]),
        "replica_targets": of(db.replicas),
        "search_targets": of(db.search_replicas),
    }


@dataclass(frozen=True)
class ConfigStorePreflightArgs:
    """Inputs of `config_store_preflight` (built by components/adapter.py when a node keeps its
    configuration in the database)."""

    database: DatabaseConfig
    """The validated `database` section (with an address)."""
    connection: remote.ConnectionArgs
    """SSH to the database host."""
    cluster_enabled: bool
    """`cluster.enabled`: the stored configuration's cluster settings are checked against it."""


def config_store_preflight(args: ConfigStorePreflightArgs, opts: pulumi.ResourceOptions | None = None) -> pulumi.Resource:
    """`database-config-store-preflight`: the read-only check of the configuration stored in the
    stack's database (db_replicas_render.render_config_store_preflight); built only when a node
    keeps its configuration there (components/adapter.py config_store_preflight_args)."""
    db = args.database
    assert db.address is not None  # the schema requires it
    control = database_control(db)
    local_sql = control.local_sql.replace(" -d postgres", "") if db.engine == "postgres" else control.local_sql
    mode = db.effective_tls_mode
    targets = database_targets(db)
    return read_script(
        "database-config-store-preflight",
        connection=args.connection,
        script=rr.render_config_store_preflight(
            engine=db.engine,
            local_sql=local_sql,
            database=db.name,
            address=db.address,
            cluster_enabled=args.cluster_enabled,
            accept_pg=" ".join(["verify-full"] + ([mode] if db.engine == "postgres" and mode != "verify-full" else [])),
            replica_targets=targets["replica_targets"],
            search_targets=targets["search_targets"],
            platform=db.host_platform,
        ),
        opts=opts,
    )

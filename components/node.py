"""MattermostNode: one Mattermost application server switched to TLS.

Owns the node's certificate (issued by the stack CA for the node name, its IP and the shared
upstream name NGINX verifies), the CA on the node (a file for the PostgreSQL DSN's sslrootcert,
and the system trust store for MySQL's `tls=true`), the 0600 EnvironmentFile with the MM_*
settings (TLS listener + TLS database DSN + whatever other components add, e.g. cluster), the
systemd drop-in that loads it, and the restart that makes it live: `ready` completes only once
the node answers over verified TLS. A node that does not come back gets its previous files back
and the change fails with the node's own journal. Delete restores the originals and queues a
restart that never fails the delete but waits (bounded) for the node to answer again, so a
destroy restarts the nodes one at a time. The DSN's CA file is a command of its own, deleted after
the restart (see `db_ca`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pulumi
from pulumi_command import remote

from components import node_render
from components.config import Database as DatabaseConfig
from components.db_replicas import database_targets
from components.pki import Pki, split_sans
from components.platform import platform_for
from components.remote_files import ManagedFile, managed_files, read_check_from_copy
from components.remote_files_render import FileSpec


class DatabaseLike(Protocol):
    """What a node needs from components.database.Database."""

    driver_name: str
    ready: list[pulumi.Resource]

    def dsn(self, ca_file: str) -> pulumi.Output[str]: ...


@dataclass(frozen=True)
class NodeSettings:
    """One node's values: its own entry in `nodes`, else the `mattermost` defaults (built from the
    stack config by components/adapter.py)."""

    name: str
    address: str
    platform: str
    """The host's OS family (components/platform.py)."""
    unit: str
    service_group: str
    """The group that may read the TLS key (the group Mattermost runs as)."""
    install_dir: str
    version: str
    version_key: str
    """The config key `version` comes from (`nodes[i].version` or `mattermost.version`)."""
    config_store: str
    store_key: str
    """The config key `config_store` comes from (`nodes[i].configStore` or `mattermost.configStore`)."""
    port: int
    tls_dir: str
    upstream_name: str
    """The name NGINX verifies every node against."""
    start_timeout_seconds: int


@dataclass(frozen=True)
class MattermostNodeArgs:
    """Inputs of one node (built from the stack config by components/adapter.py)."""

    node: NodeSettings
    """This node's values."""
    connection: remote.ConnectionArgs
    """SSH to the node."""
    others_serve: bool
    """Other nodes serve while this one restarts (more than one node): a renewal pauses between them."""
    pki: Pki
    """Issues the node certificate; its CA goes onto the node."""
    database: DatabaseLike
    """Supplies the driver name, the secret TLS DSN and what must be live before the restart."""
    extra_env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """More MM_* settings for the same EnvironmentFile (e.g. cluster), applied by the same restart."""
    preflight: pulumi.Resource | None = None
    """This node's read-only preflight (`node_preflight`): nothing of the node changes before it passed."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    """Resources that must be live before anything of the node changes: e.g. its cluster tunnels."""
    previous: pulumi.Resource | None = None
    """What only the node's restart waits for: for a rollout without downtime the previous node's
    `ready` (the first node: NGINX's transitional site), so nodes restart one at a time while the
    others serve. Its CA file (`db_ca`) does not wait for it: nothing reads that file before this
    node's own restart, and a serial chain of two commands per node is twice the SDK's work."""


class MattermostNode(pulumi.ComponentResource):
    """A node serving Mattermost over TLS (see the module docstring)."""

    cert_fingerprint_sha256: pulumi.Output[str]
    """SHA-256 fingerprint of the node certificate (AB:CD:..., as openssl prints it)."""
    cert_expiry: pulumi.Output[str]
    """RFC 3339 end of the node certificate's validity."""
    installed: dict[str, str]
    """Paths installed on the node: cert, key, ca, systemCa, env, dropin."""
    ready: pulumi.Resource
    """Completes once the node answers over verified TLS; everything that needs it depends on this."""
    node_name: str
    address: str
    port: int
    ca_file: str
    """The CA file on the node (the DSN's sslrootcert)."""
    db_ca: pulumi.Resource
    """`<node>-db-ca`: installs `ca_file`; `ready` depends on it, so a destroy removes it last."""
    previous: pulumi.Resource | None
    """MattermostNodeArgs.previous: what this node's restart waits for besides its own inputs."""

    def __init__(self, name: str, args: MattermostNodeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mattermost-tls:node:MattermostNode", name, None, opts)
        node = args.node
        unit, group = node.unit, node.service_group
        platform = platform_for(node.platform)
        paths = node_render.node_paths(node.tls_dir, unit, platform=platform)

        self.node_name = node.name
        self.previous = args.previous
        self.address = node.address
        self.port = node.port
        self.ca_file = paths.ca
        self.installed = paths.as_dict()

        issued = args.pki.issue_server_cert(
            f"{node.name}-server", split_sans([node.name, node.address, node.upstream_name]), parent=self
        )

        env_keys = sorted(args.extra_env)
        # bad names or a clash with the TLS settings fail the preview, not the apply
        node_render.render_env_file(
            node_render.tls_env(
                cert_file=paths.cert,
                key_file=paths.key,
                driver_name=args.database.driver_name,
                data_source="",
                extra=dict.fromkeys(env_keys, ""),
            )
        )
        # MySQL's driver verifies against Go's system roots, read ONCE per process (crypto/x509
        # SystemCertPool: systemRootsPool, once.Do(initSystemRoots)): a new CA in the trust
        # store (`<node>-db-ca`, a CA rotation's stage) reaches the node only by a restart, so
        # the bundle's hash is part of what this command restarts for. lib/pq (PostgreSQL)
        # reads sslrootcert at every new login: no restart needed there.
        mysql_trust = args.pki.ca_cert_pem if args.database.driver_name == "mysql" else ""
        env_text = pulumi.Output.all(
            args.database.dsn(paths.ca), mysql_trust, *[args.extra_env[k] for k in env_keys]
        ).apply(
            lambda vals: node_render.render_env_file(
                node_render.tls_env(
                    cert_file=paths.cert,
                    key_file=paths.key,
                    driver_name=args.database.driver_name,
                    data_source=vals[0],
                    extra={
                        **dict(zip(env_keys, vals[2:], strict=True)),
                        **node_render.system_trust_stamp(vals[1]),
                    },
                )
            )
        )

        connection = args.connection
        after = [*args.database.ready, *args.depends_on, *([args.preflight] if args.preflight else [])]
        # The CA the DSN verifies the database with (PostgreSQL: the sslrootcert file, read at
        # every new login by lib/pq; MySQL: the system trust store) is its own command, created
        # before and deleted AFTER the one below: a destroy restarts the node onto its original
        # DSN first, and the old process, draining, still opens TLS logins until it is gone
        # (deleting the CA first failed 12-17 requests a destroy).
        self.db_ca = managed_files(
            f"{node.name}-db-ca",
            connection=connection,
            files=[
                ManagedFile(FileSpec(paths.ca, "0644"), args.pki.ca_cert_pem),
                ManagedFile(FileSpec(paths.system_ca, "0644"), args.pki.ca_cert_pem),
            ],
            activate=node_render.render_trust_activate_script(
                require_system_trust=args.database.driver_name == "mysql", platform=platform
            ),
            restore_activate=node_render.render_trust_restore_script(paths.system_ca, platform),
            host_library=True,  # the stack's CA (tls resources only: components.pki)
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )
        files = [
            # the certificate and the drop-in go to the host's copy of the helper (the input stays
            # secret for the key and the env file, whose DSN may come from a command's output)
            ManagedFile(FileSpec(paths.cert, "0644"), issued.cert_pem, host_library=True),
            # the service reads its key as the service user; nobody else may
            ManagedFile(FileSpec(paths.key, "0640", "root", group), issued.key_pem),
            # read by systemd (root) only: it carries the database password
            ManagedFile(FileSpec(paths.env, "0600"), env_text),
            ManagedFile(FileSpec(paths.dropin, "0644"), node_render.render_dropin(paths.env), host_library=True),
        ]
        # One command for everything the restart applies: one restart per change, and a failed
        # restart rolls back cert, key, env and drop-in together.
        self.ready = managed_files(
            f"{node.name}-tls-files",
            connection=connection,
            files=files,
            activate=node_render.render_activate_script(
                unit=unit,
                port=node.port,
                upstream_name=node.upstream_name,
                paths=paths,
                timeout_seconds=node.start_timeout_seconds,
                # go-sql-driver's tls=true verifies against the system roots only
                require_system_trust=args.database.driver_name == "mysql",
                # a renewal or CA rotation restarts every node: pause so NGINX never has them
                # all marked failed at once (node_render._settle); one node has no other to serve
                settle_seconds=node_render.NGINX_FAIL_TIMEOUT + 1 if args.others_serve else 0,
                platform=platform,
            ),
            # a destroy restarts the nodes one after another (each waits for the one before)
            restore_activate=node_render.render_restore_activate_script(
                unit=unit,
                system_ca=paths.system_ca,
                port=node.port,
                wait_seconds=node.start_timeout_seconds,
                platform=platform,
            ),
            secret=True,
            # `db_ca` waits for everything in `after`: listing them again would only make the SDK's
            # cycle check walk each one's whole upstream a second time (resource_cycle_breaker.py)
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.db_ca, *([args.previous] if args.previous else [])]
            ),
        )

        self.cert_fingerprint_sha256 = issued.cert_pem.apply(node_render.cert_fingerprint_sha256)
        self.cert_expiry = issued.cert.validity_end_time
        self.register_outputs(
            {
                "cert_fingerprint_sha256": self.cert_fingerprint_sha256,
                "cert_expiry": self.cert_expiry,
                "installed": self.installed,
            }
        )


@dataclass(frozen=True)
class NodePreflightArgs:
    """Inputs of one node's preflight (built from the stack config by components/adapter.py)."""

    node: NodeSettings
    """This node's values."""
    connection: remote.ConnectionArgs
    """SSH to the node."""
    cluster_enabled: bool
    """`cluster.enabled`: the node's cluster setting is checked against it."""
    database: DatabaseConfig
    """The validated `database` section: the engine, TLS mode and DSN targets the node's are checked against."""
    cluster_check: str | None = None
    """The cluster tunnels' read-only check of this node (cluster_render.render_preflight), run
    after the node's own in the same command; None when cluster.enabled is false."""


def node_preflight(args: NodePreflightArgs, opts: pulumi.ResourceOptions | None = None) -> pulumi.Resource:
    """`<node>-preflight`: the read-only check of what is really installed on the node
    (node_render.render_preflight_script). It runs before anything is changed on any host: pass
    it in `depends_on` of every component that changes a host, and as MattermostNodeArgs.preflight.

    The installed version decides: config cannot know it, so the host is asked at apply time (a
    preview cannot read the host). Its script text holds every value it checks against, so a
    change of any of them (version, cluster.enabled, unit, database TLS mode, configStore, the
    replica lists) runs it again.
    """
    node, db = args.node, args.database
    return read_check_from_copy(
        f"{node.name}-preflight",
        connection=args.connection,
        script=node_render.render_preflight_script(
            node=node.name,
            address=node.address,
            unit=node.unit,
            install_dir=node.install_dir,
            version=node.version,
            version_key=node.version_key,
            cluster_enabled=args.cluster_enabled,
            own_env=node_render.node_paths(node.tls_dir, node.unit).env,
            driver=db.engine,
            tls_mode=db.effective_tls_mode,
            config_store=node.config_store,
            store_key=node.store_key,
            **database_targets(db),
            platform=platform_for(node.platform),
            more=[args.cluster_check] if args.cluster_check else [],
        ),
        opts=opts,
    )


def preflights_passed(
    connection: remote.ConnectionArgs, preflights: list[pulumi.Resource], opts: pulumi.ResourceOptions | None = None
) -> pulumi.Resource:
    """`preflights-passed`: done when every node's preflight is; it runs no command and opens no
    connection (pulumi-command runs nothing without `create`; `connection`, the first node's, is
    only its required input). Everything that changes a host waits for this one resource instead
    of for each preflight: linear edges at any node count."""
    return remote.Command(
        "preflights-passed",
        connection=connection,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=preflights)),
    )

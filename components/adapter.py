"""From the validated StackConfig to each component's own arguments: the one place that knows
both. A component whose args are built here sees only what it uses (its config section, its SSH
connection, its secrets as secret Outputs), so it can be built and tested without a whole stack
config, and a change to another section cannot reach it.

Narrow: GitlabMattermost, TeleportPlugin, NginxProxy, Database (and its accounts preflight),
DatabaseReplica (and the nodes' replica DSNs, the stored-configuration preflight), MattermostNode
(and its preflight, the preflights' barrier), Cluster (and its plan), the `ca.rotation: switch`
checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
from pulumi_command import remote
from pydantic import SecretStr

from components import cluster_render, database_render, db_replicas_render, nginx_render
from components.ca_switch import CaSwitchArgs, TrustHost
from components.cluster import ClusterArgs
from components.config import PROJECT, ConfigError, HostSsh, Node, StackConfig
from components.connection import connection_for
from components.database import DatabaseArgs, DatabasePreflight, DatabasePreflightArgs, SitePasswordSource
from components.db_replicas import ConfigStorePreflightArgs, DatabaseReplicaArgs, NodeDbEnvArgs
from components.gitlab import GitlabMattermostArgs
from components.nginx import NginxProxyArgs
from components.nginx_render import Backend
from components.node import DatabaseLike, MattermostNodeArgs, NodePreflightArgs, NodeSettings
from components.node_render import node_paths
from components.pki import Pki
from components.platform import platform_for
from components.teleport import CA_FILE_NAME, TeleportPluginArgs


def _secret(value: SecretStr | None) -> pulumi.Output[str] | None:
    """A secret config value as a secret Output (None when unset)."""
    return pulumi.Output.secret(value.get_secret_value()) if value is not None else None


def gitlab_args(
    cfg: StackConfig, pki: Pki, dsn: pulumi.Input[str] | None, depends_on: Sequence[pulumi.Resource]
) -> GitlabMattermostArgs:
    """GitlabMattermost's args: the `gitlab` section, its connection and gitlabTlsKey (secret)."""
    gl = cfg.gitlab
    if not gl.enabled or gl.address is None:  # the schema guarantees an address when enabled
        raise ValueError("GitlabMattermost needs gitlab.enabled and gitlab.address")
    return GitlabMattermostArgs(
        gitlab=gl,
        connection=connection_for(cfg, gl.address, gl.ssh),
        pki=pki,
        tls_key=_secret(cfg.gitlab_tls_key),
        dsn=dsn,
        depends_on=list(depends_on),
    )


def teleport_args(cfg: StackConfig, pki: Pki, depends_on: Sequence[pulumi.Resource]) -> TeleportPluginArgs:
    """TeleportPlugin's args: the `teleport` section, its connection, the URL it posts to (the
    proxy's server name unless teleport.mattermostUrl says otherwise) and teleportToken (secret)."""
    tp = cfg.teleport
    if not tp.enabled or tp.address is None or cfg.teleport_token is None:  # the schema guarantees these
        raise ValueError("TeleportPlugin needs teleport.enabled, teleport.address and teleportToken")
    return TeleportPluginArgs(
        teleport=tp,
        connection=connection_for(cfg, tp.address, tp.ssh),
        mattermost_url=tp.effective_mattermost_url(cfg.proxy.server_name),
        token=pulumi.Output.secret(cfg.teleport_token.get_secret_value()),
        pki=pki,
        depends_on=list(depends_on),
    )


def proxy_args(cfg: StackConfig, pki: Pki) -> NginxProxyArgs:
    """NginxProxy's args: the `proxy` section, its connection, every node's address with
    mattermost.port (the transitional site's upstream servers), mattermost.upstreamName and
    proxyTlsKey (secret)."""
    proxy = cfg.proxy
    if proxy.address is None:  # the schema refuses this; keep the promise if misused
        raise ValueError("proxy.address is not set")
    return NginxProxyArgs(
        proxy=proxy,
        connection=connection_for(cfg, proxy.address, proxy.ssh),
        pki=pki,
        backends=[Backend(n.address, cfg.mattermost.port) for n in cfg.nodes if n.address],
        upstream_name=cfg.mattermost.upstream_name,
        tls_key=_secret(cfg.proxy_tls_key),
    )


def _database_connection(cfg: StackConfig) -> remote.ConnectionArgs:
    db = cfg.database
    if db.address is None:  # the schema refuses this; keep the promise even if misused
        raise ConfigError(f"{PROJECT}:database.address: missing")
    return connection_for(cfg, db.address, db.ssh)


def _node_clients(cfg: StackConfig) -> dict[str, str]:
    """Node name -> address: the Mattermost user's clients (GitLab gets its own role and lines)."""
    return {n.name: n.address for n in cfg.nodes if n.address}


def database_preflight_args(cfg: StackConfig) -> DatabasePreflightArgs:
    """database_preflight's args: the `database` section, its connection, the nodes by name."""
    return DatabasePreflightArgs(database=cfg.database, connection=_database_connection(cfg), clients=_node_clients(cfg))


def database_args(cfg: StackConfig, pki: Pki, preflight: DatabasePreflight | None = None) -> DatabaseArgs:
    """Database's args: the `database` section, its connection, the nodes' addresses (the
    Mattermost user's clients), dbPassword and dbAdminPassword (secret), where the site's current
    password is read (the first node), and the `gitlab` section when its Mattermost uses this
    PostgreSQL (gitlab.enabled and gitlab.externalPostgres)."""
    return DatabaseArgs(
        database=cfg.database,
        connection=_database_connection(cfg),
        pki=pki,
        client_addresses=list(_node_clients(cfg).values()),
        password=_secret(cfg.db_password),
        admin_password=_secret(cfg.db_admin_password),
        site_password=_site_password(cfg, cfg.nodes[0]) if cfg.nodes else None,
        gitlab=cfg.gitlab if cfg.gitlab.enabled and cfg.gitlab.external_postgres else None,
        preflight=preflight,
    )


def _site_password(cfg: StackConfig, node: Node) -> SitePasswordSource:
    if node.address is None:  # the schema requires it
        raise ConfigError(f"{PROJECT}:nodes[0].address: missing")
    unit: str = cfg.node_setting(node, "unit")
    return SitePasswordSource(
        node=node.name,
        connection=connection_for(cfg, node.address, node.ssh),
        unit=unit,
        install_dir=cfg.node_setting(node, "install_dir"),
        env_file=node_paths(cfg.mattermost.tls_dir, unit).env,
    )


def replica_args(cfg: StackConfig, pki: Pki) -> list[DatabaseReplicaArgs]:
    """Each distinct replica server's args (reads first, then search; none without replicas): the
    `database` section, the server, its connection and the nodes' addresses."""
    clients = list(_node_clients(cfg).values())
    return [
        DatabaseReplicaArgs(
            database=cfg.database,
            server=server,
            connection=connection_for(cfg, server.address, server.ssh),
            pki=pki,
            client_addresses=clients,
        )
        for _, server in db_replicas_render.replica_servers(cfg)
    ]


def node_db_env_args(cfg: StackConfig, node: Node) -> NodeDbEnvArgs:
    """node_db_env's args for one node: the `database` section, the node's CA file (its unit's
    paths under mattermost.tlsDir) and its configStore."""
    return NodeDbEnvArgs(
        database=cfg.database,
        ca_file=node_paths(cfg.mattermost.tls_dir, cfg.node_setting(node, "unit")).ca,
        config_store=cfg.node_setting(node, "config_store"),
    )


def config_store_preflight_args(cfg: StackConfig) -> ConfigStorePreflightArgs | None:
    """config_store_preflight's args when any node keeps its configuration in the database
    (configStore 'database'), else None: the `database` section, its connection, cluster.enabled."""
    if not any(cfg.node_setting(n, "config_store") == "database" for n in cfg.nodes):
        return None
    return ConfigStorePreflightArgs(
        database=cfg.database, connection=_database_connection(cfg), cluster_enabled=cfg.cluster.enabled
    )


def node_connection(cfg: StackConfig, node: Node) -> remote.ConnectionArgs:
    """SSH to `node` (for preflights_passed: the first node's)."""
    if node.address is None:  # the schema requires it
        raise ConfigError(f"{PROJECT}:nodes[{_index(cfg, node)}].address: missing")
    return connection_for(cfg, node.address, node.ssh)


def _index(cfg: StackConfig, node: Node) -> int:
    return next(i for i, n in enumerate(cfg.nodes) if n.name == node.name)


def node_settings(cfg: StackConfig, node: Node) -> NodeSettings:
    """One node's values: its own, else the `mattermost` section's, and the key each came from."""
    if node.address is None:  # the schema requires it
        raise ConfigError(f"{PROJECT}:nodes[{_index(cfg, node)}].address: missing")
    mm, key = cfg.mattermost, f"nodes[{_index(cfg, node)}]"
    return NodeSettings(
        name=node.name,
        address=node.address,
        platform=node.platform,
        unit=cfg.node_setting(node, "unit"),
        service_group=cfg.node_setting(node, "service_group"),
        install_dir=cfg.node_setting(node, "install_dir"),
        version=cfg.node_setting(node, "version"),
        version_key=f"{key}.version" if node.version is not None else "mattermost.version",
        config_store=cfg.node_setting(node, "config_store"),
        store_key=f"{key}.configStore" if node.config_store is not None else "mattermost.configStore",
        port=mm.port,
        tls_dir=mm.tls_dir,
        upstream_name=mm.upstream_name,
        start_timeout_seconds=mm.start_timeout_seconds,
    )


def node_preflight_args(
    cfg: StackConfig, node: Node, plan: cluster_render.ClusterPlan | None = None
) -> NodePreflightArgs:
    """node_preflight's args for one node: its values, its connection, cluster.enabled, the
    `database` section and, with the cluster on, the tunnels' check of this node (from `plan`,
    the whole cluster's: cluster_plan(cfg) when not given)."""
    if cfg.cluster.enabled and plan is None:
        plan = cluster_plan(cfg)
    return NodePreflightArgs(
        node=node_settings(cfg, node),
        connection=node_connection(cfg, node),
        cluster_enabled=cfg.cluster.enabled,
        database=cfg.database,
        cluster_check=(
            cluster_render.render_preflight(plan, node.name, platform_for(node.platform))
            if cfg.cluster.enabled and plan is not None
            else None
        ),
    )


def node_args(
    cfg: StackConfig,
    node: Node,
    pki: Pki,
    database: DatabaseLike,
    *,
    extra_env: Mapping[str, pulumi.Input[str]] | None = None,
    preflight: pulumi.Resource | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
    previous: pulumi.Resource | None = None,
) -> MattermostNodeArgs:
    """MattermostNode's args: the node's values, its connection, whether other nodes serve while it
    restarts (more than one in `nodes`), and what the deployment hands on as it is."""
    return MattermostNodeArgs(
        node=node_settings(cfg, node),
        connection=node_connection(cfg, node),
        others_serve=len(cfg.nodes) > 1,
        pki=pki,
        database=database,
        extra_env=dict(extra_env or {}),
        preflight=preflight,
        depends_on=list(depends_on),
        previous=previous,
    )


def cluster_nodes(cfg: StackConfig, nodes: Sequence[Node] | None = None) -> list[cluster_render.ClusterNode]:
    """What the cluster plan reads of each of `nodes` (default: every node), unchecked: its name,
    its index in `nodes` (its position in the list given when it is not in the config), address,
    sshd port (its own, else `ssh.port`), host key, unit, version and tunnelSlot."""
    positions = {n.name: i for i, n in enumerate(cfg.nodes)}
    return [
        cluster_render.ClusterNode(
            name=n.name,
            index=positions.get(n.name, pos),
            address=n.address,
            ssh_port=n.ssh.port or cfg.ssh.port,
            host_key=n.ssh.host_key,
            unit=cfg.node_setting(n, "unit"),
            version=cfg.node_setting(n, "version"),
            tunnel_slot=n.tunnel_slot,
        )
        for pos, n in enumerate(cfg.nodes if nodes is None else nodes)
    ]


def cluster_plan(cfg: StackConfig, nodes: Sequence[Node] | None = None) -> cluster_render.ClusterPlan:
    """The cluster plan of `nodes` (default: every node); raises ConfigError naming the key."""
    return cluster_render.plan_cluster(cfg.cluster, cluster_nodes(cfg, nodes))


def cluster_args(cfg: StackConfig) -> ClusterArgs:
    """Cluster's args: the `cluster` section, what its plan reads of each node (cluster_nodes),
    each node's connection and platform. The plan is checked first, so a config error names its
    key before a connection is built."""
    cluster_plan(cfg)
    return ClusterArgs(
        cluster=cfg.cluster,
        nodes=cluster_nodes(cfg),
        connections={n.name: node_connection(cfg, n) for n in cfg.nodes},
        platforms={n.name: platform_for(n.platform) for n in cfg.nodes},
    )


def trust_hosts(cfg: StackConfig) -> list[TrustHost]:
    """Every host the stack installs the trust bundle on, with its connection and the paths the
    components install it to (the same path helpers), in config order."""
    out: list[TrustHost] = []

    def add(label: str, address: str, ssh: HostSsh, *files: str) -> None:
        out.append(TrustHost(label, connection_for(cfg, address, ssh), files))

    for n in cfg.nodes:
        if n.address:
            paths = node_paths(cfg.mattermost.tls_dir, cfg.node_setting(n, "unit"), platform=platform_for(n.platform))
            add(n.name, n.address, n.ssh, paths.ca, paths.system_ca)
    proxy = cfg.proxy
    if proxy.address:
        add("proxy", proxy.address, proxy.ssh, nginx_render.proxy_paths(proxy.tls_dir).ca)
    db = cfg.database
    db_ca = database_render.tls_paths(db.effective_tls_dir).ca
    if db.address:
        add("database", db.address, db.ssh, db_ca)
    for _, rep in db_replicas_render.replica_servers(cfg):
        add(f"database-replica-{rep.label}", rep.address, rep.ssh, db_ca)
    gl = cfg.gitlab
    if gl.enabled and gl.address:
        add("gitlab", gl.address, gl.ssh, gl.ca_file)
    tp = cfg.teleport
    if tp.enabled and tp.address:
        add("teleport", tp.address, tp.ssh, f"{tp.ca_dir}/{CA_FILE_NAME}")
    return out


def ca_switch_args(cfg: StackConfig, pki: Pki) -> CaSwitchArgs | None:
    """The `ca.rotation: switch` checks' args during `switch` (None otherwise): the generation
    that issues (ca.generation + 1), every trust host (trust_hosts) and the Pki."""
    if cfg.ca.rotation != "switch":
        return None
    return CaSwitchArgs(generation=cfg.ca.issuer, hosts=trust_hosts(cfg), pki=pki)

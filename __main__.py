"""mattermost-transport-encryption: read and validate the stack config, build the components in
the order the rollout needs (CA -> database TLS -> cluster tunnels, and NGINX's transitional site
-> nodes one at a time -> NGINX's https-only site and the database's TLS enforcement last), and export what other stacks consume."""

import pulumi

from components import cluster_render, config
from components.cluster import Cluster, ClusterArgs
from components.database import Database, DatabaseArgs, database_preflight
from components.db_replicas import config_store_preflight, database_replicas, node_db_env
from components.gitlab import GitlabMattermost, GitlabMattermostArgs
from components.host_helper import install_helpers_after
from components.nginx import NginxProxy, NginxProxyArgs
from components.node import MattermostNode, MattermostNodeArgs, node_preflight, preflights_passed
from components.pki import Pki, PkiArgs
from components.teleport import TeleportPlugin, TeleportPluginArgs


def _numbers_as_text(value: object) -> object:
    """Integers (ports, slots) as decimal strings: Pulumi carries every output number as a
    double, so a Python StackReference consumer would read 8074 as 8074.0."""
    if isinstance(value, dict):
        return {k: _numbers_as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_numbers_as_text(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


cfg = config.load()
if cfg.cluster.enabled:
    # port plan errors (slot collisions, overflow) stop the preview before any resource exists
    cluster_render.plan_cluster(cfg, cfg.nodes)

pki = Pki("pki", PkiArgs(ca=cfg.ca))
# Read-only checks of every node first: no host changes before each node is what the stack says.
preflights = {n.name: node_preflight(cfg, n) for n in cfg.nodes}
store_check = config_store_preflight(cfg)  # the database-stored configuration, if a node has one
db_preflight = database_preflight(cfg)  # MySQL: the accounts the nodes log in through
passed = preflights_passed(
    cfg, [*preflights.values(), *([store_check] if store_check else []), *db_preflight.resources]
)
after_preflight = pulumi.ResourceOptions(depends_on=[passed])
install_helpers_after([passed])  # nothing, not even the host helper, is installed on a host before
db_clients = [n.address for n in cfg.nodes if n.address]  # GitLab gets its own role and lines (Database._gitlab)
proxy = NginxProxy("proxy", NginxProxyArgs(cfg=cfg, pki=pki), after_preflight)
# ... and the live NGINX site found and accepted: a refused site stops the run before the DB or a node changes
after_checks = pulumi.ResourceOptions(depends_on=[passed, proxy.site_checked])
install_helpers_after([passed, proxy.site_checked])  # every other host's helper, too (the proxy's runs the capture)
database = Database(
    "database", DatabaseArgs(cfg=cfg, pki=pki, client_addresses=db_clients, preflight=db_preflight), after_checks
)
replicas = database_replicas(cfg, pki, [n.address for n in cfg.nodes if n.address], after_checks)
cluster = Cluster("cluster", ClusterArgs(cfg=cfg, nodes=cfg.nodes), after_checks) if cfg.cluster.enabled else None
# One node at a time, in config order: the others keep serving while one restarts. The first waits
# for NGINX's transitional site, which reaches each node over TLS or, not switched yet, plain HTTP.
nodes: list[MattermostNode] = []
for n in cfg.nodes:
    nodes.append(
        MattermostNode(
            n.name,
            MattermostNodeArgs(
                cfg=cfg,
                node=n,
                pki=pki,
                preflight=preflights[n.name],
                database=database,
                extra_env={**(cluster.env_for(n.name) if cluster else {}), **node_db_env(cfg, n.name, database)},
                depends_on=[
                    *(cluster.ready_for(n.name) if cluster else []),
                    *(res for rep in replicas for res in rep.ready),
                ],
                previous=nodes[-1].ready if nodes else proxy.transition,
            ),
        )
    )
proxy.finish_rollout(nodes)

pulumi.export("caCertPem", pki.ca_cert_pem)
pulumi.export("caExpiry", pki.ca_expiry)
pulumi.export("proxyUrl", proxy.url)
pulumi.export("databaseDriver", database.driver_name)
pulumi.export("mattermostDsn", pulumi.Output.secret(database.dsn(nodes[0].ca_file)))
pulumi.export(
    "nodes",
    {
        n.node_name: {
            "address": n.address,
            "certFingerprintSha256": n.cert_fingerprint_sha256,
            "certExpiry": n.cert_expiry,
            "installed": n.installed,
        }
        for n in nodes
    },
)
if cluster:
    pulumi.export("cluster", cluster.summary.apply(_numbers_as_text))

if cfg.gitlab.enabled:
    gitlab = GitlabMattermost(
        "gitlab",
        GitlabMattermostArgs(
            cfg=cfg,
            pki=pki,
            dsn=database.gitlab_dsn(cfg.gitlab.ca_file) if cfg.gitlab.external_postgres else None,
            depends_on=database.gitlab_ready,
        ),
    )
    pulumi.export("gitlabMattermostUrl", gitlab.url)
# Plain DB logins are refused only once every client uses its TLS DSN (see components/database.py).
# The last node's `ready` stands for every node's: the rollout above is serial. (Each listed
# resource costs the SDK's cycle check a walk of its whole upstream: N nodes made it N walks.)
for rep in replicas:
    rep.enforce_tls([nodes[-1].ready] if nodes else [])
database.enforce_tls([nodes[-1].ready] if nodes else [])
if cfg.gitlab.enabled:
    database.enforce_gitlab_tls([gitlab.ready])
if cfg.teleport.enabled:
    teleport = TeleportPlugin("teleport", TeleportPluginArgs(cfg=cfg, pki=pki, depends_on=[proxy]))
    pulumi.export("teleportPlugin", {"mattermostUrl": teleport.mattermost_url, "installed": teleport.installed})

"""Deployment: the rollout, in the one order that keeps the site answering. `__main__.py` loads
the config, builds a Deployment and exports `Deployment.exports`; adding a hop means giving its
component a place here.

The order (each step waits for the one before it, unless said otherwise):
1. Read-only checks of every host: each node's preflight, the database-stored configuration,
   the MySQL accounts the nodes log in through; `preflights-passed` is the barrier after them
   (nothing, not even the host helper, is installed on a host before: a node host gets only the
   copy of the helper file in the login user's home that its preflight reads its check from).
2. The CA, and NGINX's capture of its live site: a refused site stops the run before the
   database or a node changes.
3. Database TLS offered (plain logins still let in), its read replicas, the cluster tunnels.
4. NGINX's transitional site (verified TLS to every node, plain only where a node has none yet).
5. The nodes, one at a time in config order (the others keep serving while one restarts).
6. NGINX's https-only site (NginxFinalSite), GitLab's bundled Mattermost.
7. The databases refuse plain logins (TlsEnforcement: primary, replicas, GitLab's role), once
   every client uses its TLS DSN; the Teleport plugin.

It is a component (`mattermost-tls:deployment:Deployment`, named `deployment`), the parent of
everything it builds. A URN carries its parent's type chain, so that moved every resource's URN:
each resource it parents directly carries `Alias(parent=ROOT_STACK_RESOURCE)` (its URN as a
stack-level resource, before the Deployment). The engine derives each descendant's alias from
its parent's once the parent was found through its alias (pkg/resource/deploy/step_generator.go
`generateAliases`, `inheritedChildAlias`; an alias naming its parent, `collapseAliasToUrn`), and
parents register before their children, so an existing stack moves every resource in its state
and creates only the Deployment itself (an explicit alias per descendant, given by a
transformation, cost 43 % more evaluation CPU at 100 nodes for nothing the engine needs). The two-phase steps are their own components (NginxFinalSite, TlsEnforcement),
with aliases that keep their resources' places in existing stacks (tests/replay/test_urns.py)."""

from __future__ import annotations

from functools import partial
from typing import Any

import pulumi

from components import adapter
from components.ca_switch import ca_switch_preflights
from components.cluster import Cluster
from components.config import StackConfig
from components.database import Database, database_preflight
from components.database_enforcement import TlsEnforcement, TlsEnforcementArgs
from components.db_replicas import config_store_preflight, database_replicas, node_db_env
from components.gitlab import GitlabMattermost
from components.host_helper import install_helpers_after
from components.nginx import NginxProxy
from components.nginx_site import NginxFinalSite, NginxFinalSiteArgs
from components.node import MattermostNode, node_preflight, preflights_passed
from components.pki import Pki, PkiArgs
from components.teleport import TeleportPlugin


class Deployment(pulumi.ComponentResource):
    """Every component of the stack, built in rollout order (see the module docstring)."""

    exports: dict[str, Any]
    """The stack outputs other stacks consume, by name."""

    def __init__(self, cfg: StackConfig, name: str = "deployment", opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(DEPLOYMENT_TYPE, name, None, opts)
        # every direct child was a stack-level resource before this component: its alias keeps
        # its (and, inherited, its descendants') place in existing stacks
        child = pulumi.ResourceOptions(
            parent=self,
            aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)],
        )

        def after(*deps: pulumi.Input[pulumi.Resource]) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(deps)))

        # port plan errors (slot collisions, overflow) stop the preview before any resource exists
        plan = adapter.cluster_plan(cfg) if cfg.cluster.enabled else None
        self.pki = pki = Pki("pki", PkiArgs(ca=cfg.ca), child)
        # 1. read-only checks of every node: no host changes before each is what the stack says
        # (with the cluster on, each node's also checks for the manual tunnel procedure)
        preflights = {n.name: node_preflight(adapter.node_preflight_args(cfg, n, plan), child) for n in cfg.nodes}
        store_args = adapter.config_store_preflight_args(cfg)  # the database-stored configuration, if a node has one
        store_check = config_store_preflight(store_args, child) if store_args else None
        db_preflight = database_preflight(adapter.database_preflight_args(cfg), child)  # MySQL: the accounts the nodes log in through
        ca_args = adapter.ca_switch_args(cfg, pki)
        ca_checks = ca_switch_preflights(ca_args, child) if ca_args else []  # ca.rotation: switch only: every trust file holds the new CA
        passed = preflights_passed(
            adapter.node_connection(cfg, cfg.nodes[0]),
            [*preflights.values(), *([store_check] if store_check else []), *db_preflight.resources, *ca_checks],
            child,
        )
        install_helpers_after([passed], child)  # nothing, not even the host helper, is installed on a host before
        # 2. the live NGINX site found and accepted: a refused site stops the run before the DB or a node changes
        self.proxy = proxy = NginxProxy(
            "proxy", adapter.proxy_args(cfg, pki), after(passed)
        )
        after_checks = after(passed, proxy.site_checked)
        install_helpers_after([passed, proxy.site_checked], child)  # every other host's helper, too (the proxy's runs the capture)
        # 3. database TLS offered, replicas, cluster
        self.database = database = Database("database", adapter.database_args(cfg, pki, preflight=db_preflight), after_checks)
        replicas = database_replicas(adapter.replica_args(cfg, pki), after_checks)
        # No depends_on of its own: its commands wait for the checks through their hosts' helpers,
        # and its keys and the texts a node host's copy of the helper carries (which each node's
        # preflight reads) must not wait for what waits for the preflights: the SDK registers a
        # resource only once its depends_on are done, and a component's children once it is.
        self.cluster = cluster = Cluster("cluster", adapter.cluster_args(cfg), child) if cfg.cluster.enabled else None
        # 4-5. one node at a time, in config order; the first waits for NGINX's transitional site,
        # which reaches each node over TLS or, not switched yet, plain HTTP
        nodes: list[MattermostNode] = []
        self.nodes = nodes
        for n in cfg.nodes:
            nodes.append(
                MattermostNode(
                    n.name,
                    adapter.node_args(
                        cfg,
                        n,
                        pki,
                        database,
                        preflight=preflights[n.name],
                        extra_env={**(cluster.env_for(n.name) if cluster else {}), **node_db_env(adapter.node_db_env_args(cfg, n), database)},
                        depends_on=[
                            *(cluster.ready_for(n.name) if cluster else []),
                            *(res for rep in replicas for res in rep.ready),
                        ],
                        # only the restart waits for the node before (MattermostNodeArgs.previous)
                        previous=nodes[-1].ready if nodes else proxy.transition,
                    ),
                    child,
                )
            )
        # 6. the https-only site
        self.final_site = NginxFinalSite("proxy-final-site", NginxFinalSiteArgs(proxy=proxy, nodes=nodes))  # the proxy's child
        self.exports = {
            "caCertPem": pki.ca_cert_pem,
            "caExpiry": pki.ca_expiry,
            "proxyUrl": proxy.url,
            "databaseDriver": database.driver_name,
            "mattermostDsn": pulumi.Output.secret(database.dsn(nodes[0].ca_file)),
            "nodes": {
                n.node_name: {
                    "address": n.address,
                    "certFingerprintSha256": n.cert_fingerprint_sha256,
                    "certExpiry": n.cert_expiry,
                    "installed": n.installed,
                }
                for n in nodes
            },
        }
        if cluster:
            self.exports["cluster"] = cluster.summary.apply(_numbers_as_text)
        gitlab: GitlabMattermost | None = None
        if cfg.gitlab.enabled:
            gitlab = GitlabMattermost(
                "gitlab",
                adapter.gitlab_args(
                    cfg,
                    pki,
                    dsn=database.gitlab_dsn(cfg.gitlab.ca_file) if cfg.gitlab.external_postgres else None,
                    depends_on=database.gitlab_ready,
                ),
                child,
            )
            self.exports["gitlabMattermostUrl"] = gitlab.url
        # 7. plain DB logins are refused only once every client uses its TLS DSN (components/database.py).
        # The last node's `ready` stands for every node's: the rollout above is serial. (Each listed
        # resource costs the SDK's cycle check a walk of its whole upstream: N nodes made it N walks.)
        clients_ready = [nodes[-1].ready] if nodes else []
        for rep in replicas:
            TlsEnforcement(
                f"{rep.resource_name}-tls-enforced",
                TlsEnforcementArgs(enforce=partial(rep.enforce_tls, clients_ready)),
                pulumi.ResourceOptions(parent=rep),
            )
        TlsEnforcement(
            "database-tls-enforced",
            TlsEnforcementArgs(enforce=partial(database.enforce_tls, clients_ready)),
            pulumi.ResourceOptions(parent=database),
        )
        if gitlab is not None and database.gitlab_ready:
            TlsEnforcement(
                "database-gitlab-tls-enforced",
                TlsEnforcementArgs(enforce=partial(database.enforce_gitlab_tls, [gitlab.ready])),
                pulumi.ResourceOptions(parent=database),
            )
        if cfg.teleport.enabled:
            teleport = TeleportPlugin("teleport", adapter.teleport_args(cfg, pki, depends_on=[proxy]), child)
            self.exports["teleportPlugin"] = {"mattermostUrl": teleport.mattermost_url, "installed": teleport.installed}
        self.register_outputs(self.exports)


DEPLOYMENT_TYPE = "mattermost-tls:deployment:Deployment"


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

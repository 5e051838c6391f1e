"""Cluster: encrypts Mattermost's app <-> app gossip with a pinned, supervised SSH tunnel mesh
plus gossip encryption.

Owns, on every node: a dedicated tunnel account that can do nothing but forward to the peers'
gossip port; one ED25519 key per node (pulumi_tls, secret); the sshd Match block and
authorized_keys that admit exactly the peers' keys; the node's tunnel set (one table line with
the peer's real host key and one `mm-tunnel@<peer>` instance per peer,
Restart=always); the DNAT that sends TCP gossip to a peer into its tunnel and the filter that
keeps the gossip ports closed to non-peers; a drift check that puts a flushed chain or a stopped
tunnel back; a drop-in that makes Mattermost start only with its DNAT in place and after its
tunnels; the Mattermost ClusterSettings environment (gossip encryption for the UDP half that
cannot ride SSH); and the full-cluster stop that a gossip-encryption switch needs.

Built BEFORE the nodes: `env_for(node)` goes into MattermostNode(extra_env=...), `ready_for(node)`
(one barrier) into its depends_on, so a node restarts only when its tunnels, DNAT and (on a mode
switch) the stop of every node are done. Linear in nodes: 7 resources per node (names
`<node>-cluster-<role>`) and 4 shared ones, a bounded number of dependencies each (barriers carry
the all-to-all ordering), and command texts that do not grow with the node count. Adding a node
adds its own resources and updates the others' peer lists (authorized_keys, firewall rules,
tunnel set); it renames and replaces nothing. The read-only check for the manual tunnel procedure
runs in each node's preflight (cluster_render.render_preflight via components/adapter.py), before
anything is installed on any host.

Decisions and their reasons are in components/cluster_render.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_tls as tls
from pulumi_command import remote

from components import cluster_render as r
from components.config import Cluster as ClusterSection
from components.platform import Platform
from components.remote_files import ManagedFile, managed_files, run_script
from components.remote_files_render import FileSpec


@dataclass(frozen=True)
class ClusterArgs:
    """Inputs of the cluster mesh (components/adapter.py cluster_args builds them from the config)."""

    cluster: ClusterSection
    """The `cluster` section."""
    nodes: Sequence[r.ClusterNode]
    """The members, in config order: what the plan reads of each (address, sshd port, host key,
    unit, version, tunnelSlot)."""
    connections: Mapping[str, remote.ConnectionArgs]
    """Per member name, its SSH connection."""
    platforms: Mapping[str, Platform]
    """Per member name, its OS family (paths of sshd's drop-in, the firewall's commands)."""


class Cluster(pulumi.ComponentResource):
    """The tunnel mesh and gossip settings of all nodes (see the module docstring)."""

    plan: r.ClusterPlan
    """Every decision (members, slots, local ports), from config only."""
    public_keys: dict[str, pulumi.Output[str]]
    """Per node, its tunnel public key (OpenSSH format, not secret)."""
    # Any: a typed dict makes the SDK translate the nested lists against `object` and fail when
    # the engine hands the recorded outputs back
    summary: pulumi.Output[Any]
    """Exported: cluster name, tunnelled ports, gossip encryption, per node its key fingerprint
    and the loopback ports that carry traffic to it (the same on every peer, so the summary is
    linear in nodes, not one entry per pair)."""

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        # every config error surfaces before anything is registered
        plan = r.plan_cluster(args.cluster, args.nodes)
        super().__init__("mattermost-tls:cluster:Cluster", name, None, opts)
        self.plan = plan
        user = plan.tunnel_user
        conn, platform = args.connections, args.platforms

        def child(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=list(deps))

        keys: dict[str, tls.PrivateKey] = {}
        account: dict[str, pulumi.Resource] = {}
        client_key: dict[str, pulumi.Resource] = {}
        firewall: dict[str, pulumi.Resource] = {}
        for m in plan.members:
            keys[m.name] = tls.PrivateKey(
                f"{m.name}-cluster-ssh-key",
                algorithm="ED25519",
                opts=pulumi.ResourceOptions(
                    parent=self,
                    additional_secret_outputs=["private_key_openssh", "private_key_pem", "private_key_pem_pkcs8"],
                ),
            )
        self.public_keys = {n: k.public_key_openssh for n, k in keys.items()}
        # Every node's authorized_keys lists every peer's key. Read from one resource holding all
        # of them (no command: it only carries the list), each sshd depends on 1 resource, not N.
        directory = remote.Command(
            "cluster-public-keys",
            connection=conn[plan.members[0].name],
            stdin=pulumi.Output.all(**self.public_keys).apply(lambda pub: json.dumps(pub, sort_keys=True)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        key_directory = directory.stdin.apply(lambda text: text or "{}")

        for m in plan.members:
            c = conn[m.name]
            # No check of its own: the tunnels' read-only check (cluster_render.render_preflight)
            # runs in each node's preflight (components/adapter.py node_preflight_args), before
            # anything is installed on any host; every command here waits for it through the
            # host helper (components.host_helper.install_helpers_after).
            account[m.name] = run_script(
                f"{m.name}-cluster-account",
                connection=c,
                create=r.render_account_create(plan),
                delete=r.render_account_delete(plan),
                host_library=True,
                opts=child(),
            )
            client_key[m.name] = managed_files(
                f"{m.name}-cluster-client-key",
                connection=c,
                files=[ManagedFile(FileSpec(r.CLIENT_KEY, "0600", user, user), keys[m.name].private_key_openssh)],
                secret=True,
                opts=child(account[m.name]),
            )
            def authorized_keys(text: str, node: str = m.name) -> str:
                return r.render_authorized_keys(plan, node, json.loads(text))

            authorized = key_directory.apply(authorized_keys)
            # The node's whole host setup is one command: sshd's drop-in and authorized_keys, the
            # firewall and the units that use it (the tunnels target, the drift check, the
            # Mattermost drop-in that Requires= the firewall): one rollback, and one resource and
            # SSH connection per node for all of it. Until issue 11 the units were
            # `<node>-cluster-units`, and sshd's files `<node>-cluster-sshd`: an `up` over such a
            # state takes those paths over in the helper's owner ledger, and that resource's
            # delete then leaves them as they are ("belongs to another resource now").
            firewall[m.name] = managed_files(
                f"{m.name}-cluster-firewall",
                connection=c,
                files=[
                    ManagedFile(FileSpec(r.HELPER, "0755"), r.render_helper(platform[m.name])),
                    ManagedFile(FileSpec(r.FIREWALL_RULES, "0644"), r.render_firewall_rules(plan, m.name)),
                    ManagedFile(
                        FileSpec(f"{r.SYSTEMD_DIR}/{r.FIREWALL_UNIT}", "0644"), r.render_firewall_unit(plan, m.name, platform[m.name])
                    ),
                    ManagedFile(FileSpec(f"{r.SYSTEMD_DIR}/{r.TUNNELS_TARGET}", "0644"), r.render_tunnels_target()),
                    ManagedFile(
                        FileSpec(r.mattermost_dropin_path(m.unit), "0644"), r.render_mattermost_dropin(plan, m.name)
                    ),
                    ManagedFile(FileSpec(f"{r.SYSTEMD_DIR}/{r.HEAL_SERVICE}", "0644"), r.render_heal_service()),
                    ManagedFile(FileSpec(f"{r.SYSTEMD_DIR}/{r.HEAL_TIMER}", "0644"), r.render_heal_timer()),
                    ManagedFile(FileSpec(r.AUTHORIZED_KEYS, "0644"), authorized),
                    ManagedFile(FileSpec(r.sshd_dropin(platform[m.name]), "0644"), r.render_sshd_dropin(plan, m.name)),
                ],
                validate=f"{r.HELPER} check\n" + r.render_sshd_validate(plan, m.name, platform[m.name]),
                # the rules first, then the drift check that keeps them; on delete the drift
                # check stops before the rules go, so it never puts back what is being removed;
                # sshd's reload last (it ends its script once one of sshd's units reloaded)
                activate=r.render_firewall_activate(platform[m.name]) + r.render_units_activate() + r.render_sshd_reload(platform[m.name]),
                restore_activate=r.render_units_activate()
                + r.render_firewall_activate(platform[m.name])
                + r.render_sshd_reload(platform[m.name]),
                # what no command's output feeds goes to the host's copy of the helper (components.host_helper)
                host_library=True,
                # sshd's drop-in names the tunnel account
                opts=child(account[m.name]),
            )

        # Barriers (remote.Command without create: pulumi-command runs nothing and opens no
        # connection for them, commandController.go Create/Update/Delete) keep the graph linear:
        # each node's tunnels wait for ONE resource standing for "every sshd admits every key"
        # instead of for every peer's sshd, and so on. The Python SDK walks the graph per edge.
        first = conn[plan.members[0].name]
        sshd_ready = self._barrier("cluster-sshd-ready", first, list(firewall.values()))

        tunnels: dict[str, pulumi.Resource] = {}
        for m in plan.members:
            # the node's whole peer set as one resource with a fixed number of files: its command
            # text does not grow with the cluster, and a failed change rolls back only this node
            tunnels[m.name] = managed_files(
                f"{m.name}-cluster-tunnels",
                connection=conn[m.name],
                files=[
                    ManagedFile(FileSpec(r.TUNNEL_TABLE, "0644"), r.render_tunnel_table(plan, m.name)),
                    ManagedFile(
                        FileSpec(f"{r.SYSTEMD_DIR}/{r.TUNNEL_TEMPLATE}", "0644"),
                        r.render_tunnel_template(plan, m.name),
                    ),
                    ManagedFile(FileSpec(r.TUNNELS_DROPIN, "0644"), r.render_tunnels_dropin(plan, m.name)),
                ],
                # the same reload makes either set of files live: the tunnels' own, or on delete
                # the originals once they are back
                activate=r.render_tunnels_activate(),
                restore_activate=r.render_tunnels_activate(),
                host_library=True,
                # the peers must admit our key before the tunnels can come up
                opts=child(client_key[m.name], sshd_ready),
            )

        # The stop runs last (shortest downtime): once every node's tunnels and DNAT are live.
        mesh_ready = self._barrier("cluster-mesh-ready", first, list(tunnels.values()))
        mode = "true" if plan.gossip_encryption else "false"
        stops = {
            m.name: run_script(
                f"{m.name}-cluster-gossip-mode",
                connection=conn[m.name],
                create=r.render_gossip_stop(plan, m.name),
                # a new mode replaces every node's stop, so every node runs it again
                triggers=[mode],
                host_library=True,
                opts=child(mesh_ready),
            )
            for m in plan.members
        }
        # `stopped` comes after every stop, every stop after `mesh_ready`, and that after every
        # node's tunnels and firewall: one dependency says it all, for every node (a
        # barrier per node only cost a resource each). The SDK's cycle check walks each
        # dependency's whole upstream (pulumi/runtime/resource_cycle_breaker.py
        # `declare_dependency`), so listing them too would walk the cluster four times per node.
        self._stopped = self._barrier("cluster-gossip-stopped", first, list(stops.values()))

        self._env = {m.name: r.gossip_env(plan, m.name) for m in plan.members}
        fingerprints = pulumi.Output.all(**{n: k.public_key_fingerprint_sha256 for n, k in keys.items()})
        self.summary = fingerprints.apply(
            lambda fps: {
                "name": plan.name,
                "ports": list(plan.ports),
                "gossipEncryption": plan.gossip_encryption,
                "tunnelUser": plan.tunnel_user,
                "nodes": {
                    m.name: {
                        "address": m.address,
                        "slot": m.slot,
                        "keyFingerprint": fps[m.name],
                        "localPorts": list(plan.local_ports(m.name)),
                    }
                    for m in plan.members
                },
            }
        )
        self.register_outputs({"summary": self.summary, "public_keys": self.public_keys})

    def _barrier(self, name: str, connection: Any, deps: list[pulumi.Resource]) -> pulumi.Resource:
        """A resource that only orders: done when all of `deps` are; no command, no connection."""
        return remote.Command(name, connection=connection, opts=pulumi.ResourceOptions(parent=self, depends_on=deps))

    def env_for(self, node_name: str) -> dict[str, pulumi.Input[str]]:
        """The MM_CLUSTERSETTINGS_* environment for MattermostNode(extra_env=...)."""
        self.plan.member(node_name)
        return dict(self._env[node_name])

    def ready_for(self, node_name: str) -> list[pulumi.Resource]:
        """What MattermostNode(depends_on=...) must wait for before it restarts this node."""
        self.plan.member(node_name)
        return [self._stopped]

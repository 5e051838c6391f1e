"""Pure decisions and renderers of the cluster transport: plain values in, text out.

Owns the cluster plan (who peers with whom, which local port carries which pair, every config
error about it), and the text of everything the Cluster component installs: the tunnel
account's authorized_keys and sshd Match block, each node's tunnel set (tunnel table with
the pinned host keys, template unit, target drop-in), the firewall rules and their helper (which also starts the
tunnels, and checks and heals drift), the Mattermost drop-in, the preflight that refuses hosts
still carrying the manual procedure, the account script and the gossip-mode stop script.

Why the design is what it is (each point is tested):
- Memberlist gossips over TCP and UDP on the gossip port. TCP goes through a per-pair SSH tunnel
  (`ssh -N -L 127.0.0.1:<local>:<peer ip>:<port>`), selected by a DNAT in `nat OUTPUT`; UDP
  cannot ride an SSH tunnel, so gossip encryption (AES-GCM, key in the database) covers it.
- DNAT to 127.0.0.1 in OUTPUT works with route_localnet=0 and ip_forward=0 (FACTS-lab), so
  neither is touched.
- The rules are NOT in /etc/ufw/after.rules: ufw re-runs that file with `iptables-restore -n` on
  every reload and, with the default MANAGE_BUILTINS=no, never flushes `nat OUTPUT`, so the
  manual procedure's DNAT lines stack up one more copy per reload; and on a host where ufw is
  inactive (Debian's default) the file is never loaded at all and gossip would silently go out in
  the clear. Instead our own chains (MMTLS-CLUSTER-NAT, MMTLS-CLUSTER-IN) are declared in one
  rules file: `iptables-restore -n` flushes a declared chain before filling it, so every load
  replaces the whole content atomically, and one jump per chain is added only if absent. A
  oneshot unit loads them; the Mattermost unit Requires= it (no DNAT, no Mattermost).
- Local ports: port(pair X->Y, i) = tunnelPortBase + slot(Y) * len(ports) + i. slot(Y) is
  nodes[].tunnelSlot if set, else the low bits of Y's IPv4 address. Only X's own peers share
  X's loopback, and addresses are unique, so derived slots never collide while all nodes sit in
  one block of 2**bits addresses (15 bits with the defaults, 14 with a streaming port: any /17
  or /18); elsewhere a collision is a config error naming nodes[i].tunnelSlot and a free slot.
  A hash of the name would collide by the birthday bound (about one 200-node cluster in two).
  The slot depends on nothing but Y itself, so adding or removing nodes moves no existing pair.
- Switching gossip encryption needs a full-cluster stop (nodes cannot mix modes): every node
  has a stop command keyed on the mode; every node's restart waits for all of them (through one
  barrier, so the graph stays linear in nodes).
- What a second `up` cannot see (a flushed chain, a stopped tunnel: the files are unchanged)
  a timer on each node puts back by reloading the firewall unit (a restart would stop Mattermost
  through Requires=) and starting the tunnel instances.
- ssh's cipher is chosen per host at tunnel start: AES-GCM first where /proc/cpuinfo shows AES
  instructions (measured faster than chacha20-poly1305 there, bench/tunnel.py), else OpenSSH's
  default order.
"""

from __future__ import annotations

import ipaddress
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from components.config import PROJECT, Cluster, ConfigError, version_tuple
from components.platform import DEBIAN, STATE_DIR, Platform
from components.shell import q, script

CONF_DIR = "/etc/mattermost-cluster"
CLIENT_KEY = f"{CONF_DIR}/id_ed25519"
AUTHORIZED_KEYS = f"{CONF_DIR}/authorized_keys"
RUNTIME_DIR = "/run/mm-tunnel-{peer}"
"""The tunnel instance's RuntimeDirectory (systemd creates it for the tunnel user, removes it when
the instance stops): the helper writes the peer's pin there from its table line."""
TUNNEL_TABLE = f"{CONF_DIR}/tunnels"
FIREWALL_RULES = f"{CONF_DIR}/firewall.rules"
HELPER = "/usr/local/sbin/mm-cluster"
SSHD_DROPIN_NAME = "50-mattermost-cluster-tunnel.conf"


def sshd_dropin(platform: Platform = DEBIAN) -> str:
    """Where the tunnel account's Match block goes: the dir the host's sshd_config includes."""
    return f"{platform.sshd_dropin_dir}/{SSHD_DROPIN_NAME}"


SSHD_DROPIN = sshd_dropin()
"""The Match block's path on a Debian host."""
SYSTEMD_DIR = "/etc/systemd/system"
FIREWALL_UNIT = "mm-cluster-firewall.service"
TUNNELS_TARGET = "mm-cluster-tunnels.target"
TUNNEL_TEMPLATE = "mm-tunnel@.service"
TUNNELS_DROPIN = f"{SYSTEMD_DIR}/{TUNNELS_TARGET}.d/peers.conf"
HEAL_SERVICE = "mm-cluster-heal.service"
HEAL_TIMER = "mm-cluster-heal.timer"
# How often each node checks its DNAT chains and tunnels against the installed files.
HEAL_INTERVAL_SECONDS = 15
# ssh's cipher where the CPU has AES instructions (bench/tunnel.py measures both); elsewhere
# OpenSSH's default order (chacha20-poly1305 first) is kept.
AES_CIPHERS = "aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-gcm@openssh.com"
MATTERMOST_DROPIN_NAME = "40-mattermost-cluster.conf"
NAT_CHAIN = "MMTLS-CLUSTER-NAT"
IN_CHAIN = "MMTLS-CLUSTER-IN"
SSH_BIN = "/usr/bin/ssh"
NOLOGIN = "/usr/sbin/nologin"
# A tunnel counts as up once ssh listens on its local ports (it binds them only after the
# pinned host key and the key login succeeded); how long the unit may take to get there.
TUNNEL_READY_SECONDS = 15
# Names of the gossip encryption setting: renamed in v10.11 (FACTS: ClusterSettings).
GOSSIP_ENCRYPTION_VAR = "MM_CLUSTERSETTINGS_ENABLEGOSSIPENCRYPTION"
GOSSIP_ENCRYPTION_VAR_OLD = "MM_CLUSTERSETTINGS_ENABLEEXPERIMENTALGOSSIPENCRYPTION"
HEADER = "# Managed by mattermost-transport-encryption (cluster tunnels); `pulumi destroy` removes it."

# What may appear in a unit file or rules file value: no whitespace, quotes, '%' (a systemd
# specifier), '\\' or ';'. Every value rendered below is also restricted by the config schema.
_PLAIN = re.compile(r"^[A-Za-z0-9_.:@/+=,-]+$")
_HOSTKEY_ALGORITHMS = {
    "ssh-ed25519": "ssh-ed25519",
    "ecdsa-sha2-nistp256": "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384": "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521": "ecdsa-sha2-nistp521",
    # an ssh-rsa host key is used with SHA-2 signatures; plain ssh-rsa (SHA-1) is not offered
    "ssh-rsa": "rsa-sha2-512,rsa-sha2-256",
}


def _plain(what: str, value: object) -> str:
    text = str(value)
    if not _PLAIN.match(text):
        raise ValueError(f"{what} {text!r} cannot go into a unit or rules file (whitespace, quotes or '%')")
    return text



def _config_error(key: str, message: str) -> ConfigError:
    return ConfigError(f"invalid stack configuration:\n  {PROJECT}:{key}: {message}")


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ClusterNode:
    """One cluster node as the config gives it (components/adapter.py builds it from `nodes[i]`
    and the defaults): what the plan decides from, not yet checked."""

    name: str
    index: int
    """Position in the stack's `nodes` list (for error messages only)."""
    address: str | None
    ssh_port: int
    """Its sshd's port: `nodes[i].ssh.port`, else `ssh.port`."""
    host_key: str | None
    unit: str
    version: str
    tunnel_slot: int | None


@dataclass(frozen=True)
class Member:
    """One cluster node as the plan sees it."""

    name: str
    index: int
    """Position in the stack's `nodes` list (for error messages only, never for names or ports)."""
    address: str
    """IPv4 address: gossip binds and advertises it, peers tunnel to it."""
    ssh_port: int
    """The port of this node's sshd, which its peers' tunnels connect to."""
    host_key: str
    """This node's SSH host key (`type base64`), pinned in its peers' known_hosts."""
    unit: str
    """Its Mattermost systemd unit, without `.service`."""
    version: tuple[int, int, int]
    slot: int
    slot_source: str
    """'tunnelSlot' (explicit) or 'address' (derived)."""

    @property
    def key_alias(self) -> str:
        """The name its peers' ssh knows its host key under (HostKeyAlias)."""
        return f"mm-cluster-{self.name}"


@dataclass(frozen=True)
class ClusterPlan:
    """Everything the cluster component decides, from validated config only."""

    name: str
    members: tuple[Member, ...]
    ports: tuple[int, ...]
    """Tunnelled TCP ports: the gossip port, then the streaming port if configured."""
    gossip_port: int
    streaming_port: int | None
    port_base: int
    tunnel_user: str
    gossip_encryption: bool

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"{name!r} is not a cluster node (nodes: {', '.join(m.name for m in self.members)})")

    def peers(self, name: str) -> tuple[Member, ...]:
        """Every other member, in config order."""
        self.member(name)
        return tuple(m for m in self.members if m.name != name)

    def local_ports(self, peer: str) -> tuple[int, ...]:
        """The loopback ports that carry traffic to `peer` (the same on every node)."""
        return tuple(
            local_port(self.port_base, self.member(peer).slot, len(self.ports), i) for i in range(len(self.ports))
        )

    @property
    def tunnel_home(self) -> str:
        return f"/var/lib/{self.tunnel_user}"


def slot_capacity(base: int, width: int) -> int:
    """How many slots fit between `base` and 65535 with `width` ports each."""
    return max(0, (65535 - base + 1) // width)


def derived_slot_bits(base: int, width: int) -> int:
    """Address bits a derived slot uses: the largest power of two of slots that fits."""
    cap = slot_capacity(base, width)
    return cap.bit_length() - 1 if cap else 0


def derived_slot(address: str, base: int, width: int) -> int:
    """The slot of a node without tunnelSlot: the low bits of its address."""
    bits = derived_slot_bits(base, width)
    return int(ipaddress.ip_address(address)) & ((1 << bits) - 1)


def local_port(base: int, slot: int, width: int, index: int) -> int:
    """Loopback port on every node for the tunnel to the node in `slot`, port `index`."""
    return base + slot * width + index


def plan_cluster(cl: Cluster, nodes: Sequence[ClusterNode]) -> ClusterPlan:
    """Validate the `cluster` section and its nodes and decide slots; raises ConfigError naming the key."""
    if not nodes:
        raise _config_error("nodes", "the cluster needs at least one node")
    if cl.streaming_port is not None and cl.streaming_port == cl.gossip_port:
        raise _config_error("cluster.streamingPort", f"must differ from cluster.gossipPort ({cl.gossip_port})")
    ports = (cl.gossip_port,) if cl.streaming_port is None else (cl.gossip_port, cl.streaming_port)
    width = len(ports)
    capacity = slot_capacity(cl.tunnel_port_base, width)
    if capacity < 1:
        raise _config_error(
            "cluster.tunnelPortBase",
            f"{cl.tunnel_port_base} leaves no room for {width} tunnel port(s) below 65536; use e.g. 28000",
        )

    members: list[Member] = []
    seen_names: dict[str, str] = {}
    seen_addr: dict[str, str] = {}
    for n in nodes:
        i = n.index
        key = f"nodes[{i}]"
        if n.name in seen_names:
            raise _config_error(f"{key}.name", f"{n.name!r} is used twice (also {seen_names[n.name]}.name)")
        seen_names[n.name] = key
        if n.address is None:
            raise _config_error(f"{key}.address", f"missing: cluster node {n.name!r} needs its IPv4 address")
        if ipaddress.ip_address(n.address).version != 4:
            raise _config_error(
                f"{key}.address",
                f"{n.address} is IPv6; the cluster tunnels' DNAT to 127.0.0.1 is IPv4-only: give node {n.name!r} an IPv4 address",
            )
        if n.address in seen_addr:
            raise _config_error(f"{key}.address", f"{n.address} is used twice (also {seen_addr[n.address]}.address)")
        seen_addr[n.address] = key
        if n.host_key is None:
            raise _config_error(f"{key}.ssh.hostKey", "missing: peers pin this host key for their tunnels")
        if n.tunnel_slot is not None:
            slot, source = n.tunnel_slot, "tunnelSlot"
            top = local_port(cl.tunnel_port_base, slot, width, width - 1)
            if top > 65535:
                raise _config_error(
                    "cluster.tunnelPortBase",
                    f"{key}.tunnelSlot {slot} needs local port {top} > 65535 with cluster.tunnelPortBase "
                    f"{cl.tunnel_port_base}: lower cluster.tunnelPortBase to at most {65535 - slot * width - width + 1} "
                    f"or choose {key}.tunnelSlot below {capacity}",
                )
        else:
            slot, source = derived_slot(n.address, cl.tunnel_port_base, width), "address"
        # the node as checked (Member's fields in order), with its slot and where the slot came from
        members.append(Member(n.name, i, n.address, n.ssh_port, n.host_key, n.unit, version_tuple(n.version), slot, source))

    by_slot: dict[int, Member] = {}
    for m in members:
        other = by_slot.get(m.slot)
        if other is not None:
            # name the node whose own setting fixes it without moving anything else
            culprit, kept = (
                (other, m) if (other.slot_source == "tunnelSlot" and m.slot_source == "address") else (m, other)
            )
            used = {x.slot for x in members}
            free = next(s for s in range(min(capacity, 1000) + 1) if s not in used)
            why = "explicit" if culprit.slot_source == "tunnelSlot" else f"derived from its address {culprit.address}"
            raise _config_error(
                f"nodes[{culprit.index}].tunnelSlot",
                f"node {culprit.name!r} gets tunnel slot {culprit.slot} ({why}), which node {kept.name!r} "
                f"(nodes[{kept.index}]) already has; set nodes[{culprit.index}].tunnelSlot to a free slot, e.g. {free}",
            )
        by_slot[m.slot] = m

    # grouped: who, which ports, the account and the gossip mode
    return ClusterPlan(
        name=cl.name, members=tuple(members),
        ports=ports, gossip_port=cl.gossip_port, streaming_port=cl.streaming_port, port_base=cl.tunnel_port_base,
        tunnel_user=cl.tunnel_user, gossip_encryption=cl.gossip_encryption,
    )


# ---------------------------------------------------------------- Mattermost settings


def gossip_encryption_var(version: tuple[int, int, int]) -> str:
    """The env name of the gossip encryption switch for a Mattermost version."""
    return GOSSIP_ENCRYPTION_VAR if version >= (10, 11, 0) else GOSSIP_ENCRYPTION_VAR_OLD


def gossip_env(plan: ClusterPlan, node: str) -> dict[str, str]:
    """The MM_CLUSTERSETTINGS_* environment of one node (no secret among them)."""
    m = plan.member(node)
    env = {
        "MM_CLUSTERSETTINGS_ENABLE": "true",
        "MM_CLUSTERSETTINGS_CLUSTERNAME": plan.name,
        "MM_CLUSTERSETTINGS_ADVERTISEADDRESS": m.address,
        "MM_CLUSTERSETTINGS_BINDADDRESS": m.address,
        "MM_CLUSTERSETTINGS_USEIPADDRESS": "true",
        "MM_CLUSTERSETTINGS_GOSSIPPORT": str(plan.gossip_port),
        gossip_encryption_var(m.version): "true" if plan.gossip_encryption else "false",
    }
    if plan.streaming_port is not None:
        env["MM_CLUSTERSETTINGS_STREAMINGPORT"] = str(plan.streaming_port)
    return env


# ---------------------------------------------------------------- sshd side (the node tunnels arrive at)


def render_authorized_keys(plan: ClusterPlan, node: str, public_keys: Mapping[str, str]) -> str:
    """The tunnel account's authorized_keys on `node`: one line per peer, in config order.

    Each key may only forward to this node's own tunnelled ports (permitopen), only from the
    peer's address (from=), and never gets a shell, a pty, agent or X11 forwarding (restrict);
    `port-forwarding` re-enables forwarding, which sshd's Match block narrows to local (-L) only.
    """
    me = plan.member(node)
    lines = [
        HEADER,
        f"# Peers of {node} that may open tunnels to {me.address} ports {', '.join(map(str, plan.ports))}.",
    ]
    opens = ",".join(f'permitopen="{me.address}:{p}"' for p in plan.ports)
    for peer in plan.peers(node):
        key = public_keys[peer.name].strip().split()
        if len(key) < 2 or key[0] != "ssh-ed25519":
            raise ValueError(f"public key of {peer.name} is not an OpenSSH ed25519 key")
        lines.append(
            f'restrict,port-forwarding,from="{peer.address}",{opens},command="/bin/false" '
            f"{key[0]} {key[1]} mm-cluster-{peer.name}"
        )
    return "\n".join(lines) + "\n"


def render_sshd_dropin(plan: ClusterPlan, node: str) -> str:
    """sshd Match block for the tunnel account: keys from our file only, local forwards to our ports only."""
    me = plan.member(node)
    user = _plain("tunnel user", plan.tunnel_user)
    opens = " ".join(f"{_plain('address', me.address)}:{p}" for p in plan.ports)
    return (
        f"{HEADER}\n"
        f"# The account {user} exists only to carry Mattermost cluster gossip between nodes.\n"
        f"Match User {user}\n"
        f"    AuthorizedKeysFile {AUTHORIZED_KEYS}\n"
        "    AuthenticationMethods publickey\n"
        "    PubkeyAuthentication yes\n"
        "    PasswordAuthentication no\n"
        "    KbdInteractiveAuthentication no\n"
        "    AllowTcpForwarding local\n"
        f"    PermitOpen {opens}\n"
        "    PermitListen none\n"
        "    AllowAgentForwarding no\n"
        "    AllowStreamLocalForwarding no\n"
        "    X11Forwarding no\n"
        "    PermitTTY no\n"
        "    PermitTunnel no\n"
        "    PermitUserRC no\n"
        "    GatewayPorts no\n"
        "    ForceCommand /bin/false\n"
    )


def render_sshd_validate(plan: ClusterPlan, node: str, platform: Platform = DEBIAN) -> str:
    """`sshd -t`, then prove sshd really applies our Match block (an sshd_config without the
    `Include /etc/ssh/sshd_config.d/*.conf` line would ignore it and the tunnels would fail;
    templates/cluster-sshd-validate.sh). The node's values are its first lines, so the rest is
    one text on every node: an entry of the helper's library (tools/helper_library.py)."""
    me = plan.member(node)
    return script(
        "cluster-sshd-validate.sh",
        user=plan.tunnel_user,
        address=me.address,
        permitopen="permitopen " + " ".join(f"{me.address}:{p}" for p in plan.ports),
        keys=AUTHORIZED_KEYS,
        dropin=sshd_dropin(platform),
        include=f"Include {platform.sshd_dropin_dir}/*.conf",
    )


def render_sshd_reload(platform: Platform = DEBIAN) -> str:
    """Reload whichever of the platform's sshd units runs (Debian names it ssh.service, others
    sshd.service); with socket activation nothing runs that could be reloaded and every new
    connection reads the configuration anyway (templates/cluster-sshd-reload.sh)."""
    return script("cluster-sshd-reload.sh", code={"units": " ".join(q(u) for u in platform.sshd_units)})


SSHD_RELOAD = render_sshd_reload()
"""The reload on a Debian host."""


# ---------------------------------------------------------------- client side (the node tunnels start from)
#
# One tunnel per peer, but a fixed set of files per node whatever the node count: a template unit
# (mm-tunnel@<peer>.service), one table with a line per peer (what its ssh command line and
# its pinned host key need), one target drop-in that wants every instance. So the
# install command's text does not grow with the cluster (Linux refuses one exec argument over
# 128 KiB), and the node's whole peer set is one resource that rolls back as one.


def tunnel_unit_name(peer: str) -> str:
    """The systemd instance that carries the tunnel to `peer`."""
    return f"mm-tunnel@{_plain('node name', peer)}.service"


def legacy_tunnel_unit_name(peer: str) -> str:
    """The per-pair unit of the design before the tunnel table (stopped on upgrade)."""
    return f"mm-tunnel-{_plain('node name', peer)}.service"


def mattermost_dropin_path(unit: str) -> str:
    return f"{SYSTEMD_DIR}/{_plain('unit', unit)}.service.d/{MATTERMOST_DROPIN_NAME}"


def known_hosts_line(plan: ClusterPlan, peer: str) -> str:
    """The peer's pinned host key under its alias (no trust on first use, ever): the one line the
    helper writes to RUNTIME_DIR/known_hosts from the table line before it starts ssh. The key is
    in the table once (not in a second file too): a node's peer keys are most of its state."""
    p = plan.member(peer)
    ktype, blob = p.host_key.split()[:2]
    return f"{p.key_alias} {ktype} {blob}\n"


def render_known_hosts(plan: ClusterPlan, node: str) -> str:
    """Every peer's pin, as the node's tunnels write them (for tests and audits to compare)."""
    return "".join(known_hosts_line(plan, p.name) for p in plan.peers(node))


def tunnel_ssh_argv(plan: ClusterPlan, node: str, peer: str) -> list[str]:
    """The ssh command line of the tunnel node -> peer: what the helper's `tunnel` op builds
    from the peer's table line (tunnel_table_line) and runs (tests compare the two)."""
    plan.member(node)
    p = plan.member(peer)
    ktype = p.host_key.split()[0]
    argv = [
        SSH_BIN,
        "-F",
        "none",  # no system or user ssh_config can loosen what follows
        "-N",
        "-T",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"IdentityFile={CLIENT_KEY}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={RUNTIME_DIR.format(peer=p.name)}/known_hosts",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        f"HostKeyAlias={p.key_alias}",
        "-o",
        f"HostKeyAlgorithms={_HOSTKEY_ALGORITHMS[ktype]}",
        "-o",
        "UpdateHostKeys=no",
        "-o",
        "CheckHostIP=no",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=3",
        "-o",
        "ConnectTimeout=10",
        "-p",
        str(p.ssh_port),
    ]
    for port, local in zip(plan.ports, plan.local_ports(peer), strict=True):
        argv += ["-L", f"127.0.0.1:{local}:{p.address}:{port}"]
    argv.append(f"{plan.tunnel_user}@{p.address}")
    return [_plain("ssh argument", a) for a in argv]


TABLE_COLUMNS = "peer local-ports host-key host-key-type user@address ssh-port remote-ports"


def tunnel_table_line(plan: ClusterPlan, node: str, peer: str) -> str:
    """The table line of the tunnel node -> peer: every value of tunnel_ssh_argv that differs
    between peers, nothing else (the helper adds the fixed options: a node's table stays about
    100 bytes per peer, which the state stores twice per node)."""
    plan.member(node)
    p = plan.member(peer)
    ktype, blob = p.host_key.split()[:2]
    fields = [
        _plain("node name", p.name),
        ",".join(str(x) for x in plan.local_ports(p.name)),
        _plain("host key", blob),
        _plain("host key type", ktype),
        _plain("tunnel destination", f"{plan.tunnel_user}@{p.address}"),
        str(p.ssh_port),
        ",".join(str(x) for x in plan.ports),
    ]
    return " ".join(fields)


def render_tunnel_table(plan: ClusterPlan, node: str) -> str:
    """One line per peer: `<peer> <local ports> <host key> <host key type> <user@address>
    <ssh port> <remote ports>` (ports comma-separated, the i-th local port forwards to the i-th
    remote port). The host key is pinned from here (known_hosts_line); no other file holds it.

    The helper starts a tunnel from its line (`mm-cluster tunnel <peer>`: exactly the argv of
    tunnel_ssh_argv, tested by running it) and `tunnels-apply` restarts exactly the tunnels whose
    line changed (the host key is part of the line, so a new pin restarts that tunnel too). Every
    field is plain (no whitespace), so the shell's word splitting reads it back exactly.
    """
    lines = [f"# {HEADER[2:]}", f"# {TABLE_COLUMNS}"]
    lines += [tunnel_table_line(plan, node, p.name) for p in plan.peers(node)]
    return "\n".join(lines) + "\n"


def render_tunnel_template(plan: ClusterPlan, node: str) -> str:
    """systemd template of every tunnel of `node` (instance = peer name): supervised, restarted
    within seconds, never given up on."""
    me = plan.member(node)
    unit = _plain("unit", me.unit)
    return (
        f"{HEADER}\n"
        f"# Gossip from {me.name} to the peer %i over SSH; its command line is in {TUNNEL_TABLE}.\n"
        "[Unit]\n"
        f"Description=Mattermost cluster tunnel {me.name} -> %i\n"
        "Wants=network-online.target\n"
        f"After=network-online.target {FIREWALL_UNIT}\n"
        f"Before={unit}.service {TUNNELS_TARGET}\n"
        f"PartOf={TUNNELS_TARGET}\n"
        # never stop restarting: a peer that is down for an hour must be picked up when it returns
        "StartLimitIntervalSec=0\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"User={_plain('tunnel user', plan.tunnel_user)}\n"
        f"Group={plan.tunnel_user}\n"
        # the helper records the table line it started from here, and execs ssh
        "RuntimeDirectory=mm-tunnel-%i\n"
        f"ExecStart={HELPER} tunnel %i\n"
        f"ExecStartPost={HELPER} wait-tunnel %i {TUNNEL_READY_SECONDS}\n"
        "Restart=always\n"
        "RestartSec=2\n"
        "NoNewPrivileges=yes\n"
        "PrivateTmp=yes\n"
        "ProtectSystem=full\n"
    )


def render_tunnels_dropin(plan: ClusterPlan, node: str) -> str:
    """Pulls every tunnel of `node` into the tunnels target (a file, not `systemctl enable`
    symlinks that would outlive their unit on delete)."""
    wants = " ".join(tunnel_unit_name(p.name) for p in plan.peers(node))
    return f"{HEADER}\n[Unit]\nWants={wants}\n" if wants else f"{HEADER}\n[Unit]\n"


def render_tunnels_target() -> str:
    return (
        f"{HEADER}\n"
        "[Unit]\n"
        "Description=Mattermost cluster SSH tunnels (one mm-tunnel@<peer>.service per peer)\n"
        f"After={FIREWALL_UNIT}\n"
        # the drift check runs whenever the tunnels do
        f"Wants={HEAL_TIMER}\n"
    )


def render_heal_service() -> str:
    return (
        f"{HEADER}\n"
        "[Unit]\n"
        "Description=Mattermost cluster drift check: puts back a flushed DNAT chain or a stopped tunnel\n"
        f"After={FIREWALL_UNIT}\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={HELPER} heal\n"
    )


def render_heal_timer() -> str:
    return (
        f"{HEADER}\n"
        "[Unit]\n"
        "Description=Mattermost cluster drift check every "
        f"{HEAL_INTERVAL_SECONDS} s\n"
        "\n"
        "[Timer]\n"
        f"OnActiveSec={HEAL_INTERVAL_SECONDS}s\n"
        f"OnUnitActiveSec={HEAL_INTERVAL_SECONDS}s\n"
        "AccuracySec=1s\n"
    )


def render_mattermost_dropin(plan: ClusterPlan, node: str) -> str:
    """Mattermost starts only with its DNAT in place (Requires) and after its tunnels (Wants:
    a peer that is down must not keep this node down)."""
    return (
        f"{HEADER}\n"
        "[Unit]\n"
        f"Requires={FIREWALL_UNIT}\n"
        f"After={FIREWALL_UNIT}\n"
        f"Wants={TUNNELS_TARGET}\n"
        f"After={TUNNELS_TARGET}\n"
    )


def render_units_activate() -> str:
    """Make systemd read the target, the drift check and the Mattermost drop-in (Mattermost
    restarts with its node, not here) and start the drift check; once the target's file is gone
    (delete), stop what is left of them (templates/cluster-units-activate.sh)."""
    return script(
        "cluster-units-activate.sh",
        target_file=f"{SYSTEMD_DIR}/{TUNNELS_TARGET}",
        timer=HEAL_TIMER,
        heal_service=HEAL_SERVICE,
        target=TUNNELS_TARGET,
    )


def render_tunnels_activate() -> str:
    """(Re)start exactly the tunnels whose table line changed, stop those no longer listed, and
    fail with the journal of any that does not come up. Without the template (rollback of a first
    install, or delete) every instance stops; the helper may be gone by then (delete order;
    templates/cluster-tunnels-activate.sh)."""
    return script("cluster-tunnels-activate.sh", helper=HELPER, instances="mm-tunnel@*.service")


# ---------------------------------------------------------------- firewall


def render_firewall_rules(plan: ClusterPlan, node: str) -> str:
    """iptables-restore input for `node`: DNAT per peer and port, gossip ports for peers only.

    Loaded with `iptables-restore -n`: declaring our chains flushes them, so this file is the
    whole content of both chains after every load.
    """
    me = plan.member(node)
    out = [HEADER, f"# Loaded by {HELPER} ({FIREWALL_UNIT}) on {me.name}.", "*nat", f":{NAT_CHAIN} - [0:0]"]
    for p in plan.peers(node):
        out.append(f"# {p.name}: TCP gossip into the SSH tunnel")
        for port, local in zip(plan.ports, plan.local_ports(p.name), strict=True):
            out.append(
                f"-A {NAT_CHAIN} -d {p.address}/32 -p tcp -m tcp --dport {port} -j DNAT --to-destination 127.0.0.1:{local}"
            )
    out += ["COMMIT", "*filter", f":{IN_CHAIN} - [0:0]"]
    # tunnelled TCP arrives from the local sshd over lo
    out.append(f"-A {IN_CHAIN} -i lo -j RETURN")
    for p in plan.peers(node):
        out.append(f"# {p.name}: its tunnels (SSH) and its encrypted UDP gossip")
        out.append(f"-A {IN_CHAIN} -s {p.address}/32 -p tcp -m tcp --dport {me.ssh_port} -j ACCEPT")
        out.append(f"-A {IN_CHAIN} -s {p.address}/32 -p udp -m udp --dport {plan.gossip_port} -j ACCEPT")
    out.append("# gossip over TCP only through the tunnels; UDP gossip only from peers")
    for port in plan.ports:
        out.append(f"-A {IN_CHAIN} -p tcp -m tcp --dport {port} -j DROP")
    out.append(f"-A {IN_CHAIN} -p udp -m udp --dport {plan.gossip_port} -j DROP")
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def firewall_stop(platform: Platform = DEBIAN) -> str:
    """Removes both jumps and both chains; shared by the helper's `stop` and the delete path,
    which runs after the helper itself is gone (templates/cluster-firewall-stop.sh)."""
    return script("cluster-firewall-stop.sh", iptables=platform.iptables, nat_chain=NAT_CHAIN, in_chain=IN_CHAIN)


def render_helper(platform: Platform = DEBIAN) -> str:
    """/usr/local/sbin/mm-cluster: loads and removes the rules, waits for a tunnel's ports."""
    return script(
        "cluster-helper.sh",
        code={
            "HEADER": HEADER,
            "FIREWALL_STOP": firewall_stop(platform).removesuffix("\n"),
            "IPTABLES": q(platform.iptables),
            "IPTABLES_RESTORE": q(platform.iptables_restore),
        },
        RULES=FIREWALL_RULES,
        NAT_CHAIN=NAT_CHAIN,
        IN_CHAIN=IN_CHAIN,
        TABLE=TUNNEL_TABLE,
        TEMPLATE=f"{SYSTEMD_DIR}/{TUNNEL_TEMPLATE}",
        FIREWALL_UNIT=FIREWALL_UNIT,
        AES_CIPHERS=AES_CIPHERS,
        SSH_BIN=SSH_BIN,
        CLIENT_KEY=CLIENT_KEY,
    )


def render_firewall_unit(plan: ClusterPlan, node: str, platform: Platform = DEBIAN) -> str:
    return (
        f"{HEADER}\n"
        "[Unit]\n"
        "Description=Mattermost cluster firewall: TCP gossip into the SSH tunnels, gossip ports for peers only\n"
        f"After={' '.join(platform.firewall_units)}\n"
        f"Before={_plain('unit', plan.member(node).unit)}.service {TUNNELS_TARGET}\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"ExecStart={HELPER} start\n"
        f"ExecReload={HELPER} reload\n"
        # '-': on delete the helper is already gone; the delete script cleans up itself
        f"ExecStop=-{HELPER} stop\n"
    )


def render_firewall_activate(platform: Platform = DEBIAN) -> str:
    """Load the rules: reload when running (a restart would take Mattermost down with it through
    Requires=), start otherwise; then prove both jumps are there. Without the unit file (rollback
    of a first install, or delete) remove everything instead (templates/cluster-firewall-activate.sh)."""
    return script(
        "cluster-firewall-activate.sh",
        # the stop lines inside the else branch
        code={"firewall_stop": textwrap.indent(firewall_stop(platform), "  ").removesuffix("\n")},
        unit_file=f"{SYSTEMD_DIR}/{FIREWALL_UNIT}",
        unit=FIREWALL_UNIT,
        iptables=platform.iptables,
        nat_chain=NAT_CHAIN,
        in_chain=IN_CHAIN,
    )


# ---------------------------------------------------------------- one-off scripts


def render_preflight(plan: ClusterPlan, node: str, platform: Platform = DEBIAN) -> str:
    """Read-only check before anything changes on `node`: refuses a host that still carries the
    manual tunnel procedure and says exactly what to remove (templates/cluster-preflight.sh)."""
    me = plan.member(node)
    return script(
        "cluster-preflight.sh",
        code={
            "IPTABLES": q(platform.iptables),
            "IPTABLES_RESTORE": q(platform.iptables_restore),
            "FIREWALL_FILES": " ".join(q(f) for f in platform.firewall_rule_files),
            # inside a double-quoted message: Platform values are plain text (no $, quotes, `)
            "TOOLS_HINT": f"{platform.label}: {platform.install(platform.cluster_packages)}",
        },
        node=me.name,
        unit=me.unit,
        ports=" ".join(map(str, plan.ports)),
        ours=CLIENT_KEY,
        nat_chain=NAT_CHAIN,
    )


def account_marker(plan: ClusterPlan) -> str:
    return f"{STATE_DIR}/cluster-account-{plan.tunnel_user}"


def render_account_create(plan: ClusterPlan) -> str:
    """Create the tunnel account (system user, no login shell, no password) unless it exists;
    an existing account is used only if it cannot log in either (templates/cluster-account-create.sh).

    useradd/usermod/userdel rewrite the tools' own backups (/etc/passwd- ...): they are kept so
    delete leaves /etc byte-identical. The password field is '*' instead of useradd's '!': no
    password either way, but sshd without PAM treats '!' as a locked account and would refuse
    the key."""
    return script(
        "cluster-account-create.sh",
        user=plan.tunnel_user,
        home=plan.tunnel_home,
        marker=account_marker(plan),
        state=STATE_DIR,
        nologin=NOLOGIN,
    )


def render_account_delete(plan: ClusterPlan) -> str:
    """Remove the account only if create made it, and put the tools' backups back
    (templates/cluster-account-delete.sh)."""
    return script(
        "cluster-account-delete.sh",
        user=plan.tunnel_user,
        marker=account_marker(plan),
        state=STATE_DIR,
    )


def render_gossip_stop(plan: ClusterPlan, node: str) -> str:
    """Stop `node` unless it already runs with the wanted gossip encryption mode.

    Nodes cannot mix encrypted and plain gossip, so a mode change is a full-cluster stop: every
    node runs this (the nodes' restarts depend on all of them), and each node's own restart with
    the new environment brings it back. A node that already runs in the wanted mode, or is not
    running, is left alone, so converging twice stops nothing.

    A node that does not gossip at all is left alone too: clustering is off in the running server
    (the manual install before the first `up`, or a Team Edition), so there is no mode to mix, and
    its own restart brings it into the cluster. Stopping it would only turn any failure between
    this stop and its restart (the database, another node) into an outage of every node. It does
    not gossip if its main process has no UDP socket of its own: memberlist always binds one on
    the gossip port, and Mattermost binds UDP for nothing else. Without `ss` it is stopped, as before
    (templates/cluster-gossip-stop.sh).
    """
    m = plan.member(node)
    want = "true" if plan.gossip_encryption else "false"
    return script(
        "cluster-gossip-stop.sh", unit=f"{m.unit}.service", want=want, new=GOSSIP_ENCRYPTION_VAR, old=GOSSIP_ENCRYPTION_VAR_OLD
    )

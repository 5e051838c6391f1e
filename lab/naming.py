"""Names, roles and addresses of lab hosts (pure; no side effects).

Owns: the address plan of the design doc (the address derives from the host
NAME, never from its position: proxy .10, mariadb .20, postgres .21,
pgreplica .22 (PostgreSQL streaming replica, only as an extra host), plugin .30, gitlab .31,
mmN .(100+N)), each host's role, and the names of the
kernel objects the lab creates for a host (netns, veth, machine, cgroup).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SUBNET = "10.251.0.0/24"
PREFIX = "10.251.0"
GATEWAY = f"{PREFIX}.1"
PREFIX_LEN = 24
BRIDGE = "mmtls-br0"
CGROUP_NAME = "mmtls-lab"  # /sys/fs/cgroup/<hierarchy>/mmtls-lab/<host>
NETNS_PREFIX = "mmtls-"  # /run/netns/mmtls-<host>
VETH_PREFIX = "mmv-"  # VM-side veth; IFNAMSIZ allows 15 characters
MACHINE_PREFIX = "mmtls-"  # systemd-nspawn --machine (propagate dir name)

FIXED_ADDRESSES: dict[str, int] = {"proxy": 10, "mariadb": 20, "postgres": 21, "pgreplica": 22, "plugin": 30, "gitlab": 31}
NODE_RE = re.compile(r"^mm([1-9][0-9]?)$")
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,10}$")
MAX_NODES = 99


class LabNameError(ValueError):
    """A host name the lab cannot place."""


@dataclass(frozen=True)
class HostSpec:
    """One lab host: its name, role and address."""

    name: str
    role: str  # node | proxy | mariadb | postgres | pgreplica | plain
    address: str

    @property
    def netns(self) -> str:
        return NETNS_PREFIX + self.name

    @property
    def veth(self) -> str:
        return VETH_PREFIX + self.name

    @property
    def mac(self) -> str:
        """A fixed MAC from the address: a recreated host keeps it, so no neighbour
        cache (the VM's or another host's) points at a vanished interface."""
        return f"02:6d:6d:74:00:{int(self.address.rsplit('.', 1)[1]):02x}"

    @property
    def machine(self) -> str:
        return MACHINE_PREFIX + self.name


def address_of(name: str) -> str:
    """The host's address, derived from its name."""
    if not NAME_RE.match(name):
        raise LabNameError(f"host name {name!r} must match {NAME_RE.pattern}")
    m = NODE_RE.match(name)
    if m:
        return f"{PREFIX}.{100 + int(m.group(1))}"
    if name in FIXED_ADDRESSES:
        return f"{PREFIX}.{FIXED_ADDRESSES[name]}"
    raise LabNameError(
        f"no address for host {name!r}: use mmN (N 1..{MAX_NODES}) or one of {', '.join(sorted(FIXED_ADDRESSES))}"
    )


def role_of(name: str) -> str:
    """What the host is seeded as."""
    if NODE_RE.match(name):
        return "node"
    return name if name in ("proxy", "mariadb", "postgres", "pgreplica") else "plain"


def spec(name: str) -> HostSpec:
    return HostSpec(name=name, role=role_of(name), address=address_of(name))


def plan(nodes: int = 3, extra: tuple[str, ...] | list[str] = ()) -> list[HostSpec]:
    """The hosts of a lab with ``nodes`` Mattermost nodes plus ``extra`` named hosts."""
    if not 1 <= nodes <= MAX_NODES:
        raise LabNameError(f"--nodes must be 1..{MAX_NODES}, got {nodes}")
    names = [f"mm{i}" for i in range(1, nodes + 1)] + ["proxy", "mariadb", "postgres"]
    for name in extra:
        if name and name not in names:
            names.append(name)
    return [spec(n) for n in names]

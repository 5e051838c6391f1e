"""The lab's real hosts: systemd-nspawn containers booting Debian's systemd.

Owns: bringing hosts up and down on this VM (network namespaces on the
``mmtls-br0`` bridge, one overlay upper dir per host over the cached base,
one cgroup directory per nspawn process), clearing what a killed run left
behind, the lab SSH key, ``.lab/inventory.json`` (design-doc schema, mode 0600)
and ``.lab/known_hosts`` built from the hosts' real host keys, and the helpers
tests and the replay engine use to reach hosts (``ssh`` over real SSH with
pinned host keys, ``netns_exec`` for probing from inside a host's namespace).

CLI::

    python -m lab.hosts up [--nodes N] [--extra plugin,gitlab]
    python -m lab.hosts status | down | reset-host NAME | ssh NAME CMD...

Every process the lab starts is recorded by PID in ``.lab/run/`` and stopped
by that PID (or found through the lab's own cgroup directories); nothing is
stopped by name.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import base_image, naming, seeding
from .naming import BRIDGE, CGROUP_NAME, GATEWAY, PREFIX_LEN, SUBNET, HostSpec

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = Path(os.environ.get("MMTLS_LAB_DIR", REPO / ".lab"))
CGROUP_HIERARCHIES = ("systemd", "unified", "memory")
NETNS_DIR = Path("/run/netns")
PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")
NSPAWN_MARKER = f"--network-namespace-path={NETNS_DIR}/{naming.NETNS_PREFIX}"
BOOT_TIMEOUT = float(os.environ.get("MMTLS_LAB_BOOT_TIMEOUT", "180"))
STOP_GRACE = 10.0
LOCK_FILE = Path("/run/mmtls-lab.lock")


class LabError(RuntimeError):
    """The lab could not be brought to the requested state."""


# --------------------------------------------------------------------------- VM-side helpers


def _run(argv: Sequence[str], check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), text=True, capture_output=True, **kw)
    if check and proc.returncode != 0:
        raise LabError(f"{shlex.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def link_names() -> set[str]:
    """Names of the network interfaces in the VM's namespace."""
    out = _run(["ip", "-o", "link", "show"]).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def netns_names() -> set[str]:
    return {p.name for p in NETNS_DIR.iterdir()} if NETNS_DIR.is_dir() else set()


def cgroup_roots() -> list[Path]:
    roots = []
    for h in CGROUP_HIERARCHIES:
        p = Path("/sys/fs/cgroup") / h
        if (p / "cgroup.procs").exists():
            roots.append(p / CGROUP_NAME)
    return roots


def _cgroup_pids(path: Path) -> set[int]:
    """Every PID in a cgroup directory and its sub-directories."""
    pids: set[int] = set()
    if not path.is_dir():
        return pids
    for dirpath, _dirs, files in os.walk(path):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError):
                pids |= {int(x) for x in Path(dirpath, "cgroup.procs").read_text().split()}
    return pids


def _rmdir_tree(path: Path) -> bool:
    """Remove a cgroup directory tree bottom-up; False if something stays."""
    if not path.is_dir():
        return True
    for dirpath, _dirs, _files in os.walk(path, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
    return not path.exists()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone; our own children are reaped)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def lab_nspawn_pids() -> dict[str, int]:
    """host name -> PID of every lab nspawn process on the VM (also from killed runs)."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = _cmdline(int(entry.name))
        if not argv or "systemd-nspawn" not in Path(argv[0]).name:
            continue
        for arg in argv:
            if arg.startswith(NSPAWN_MARKER):
                found[arg[len(NSPAWN_MARKER) :]] = int(entry.name)
    return found


def _enter_cgroups(dirs: list[Path]) -> None:
    """preexec_fn: put the about-to-exec nspawn into its own cgroup in every hierarchy."""
    pid = str(os.getpid())
    for d in dirs:
        (d / "cgroup.procs").write_text(pid)


def _tcp_open(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """One lab-changing operation at a time on this VM (the kernel names are global).

    The kernel drops the lock when its holder dies, so a killed run never
    blocks the next one; nspawn does not inherit it (close_fds).
    """
    with open(LOCK_FILE, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# --------------------------------------------------------------------------- the lab


class Lab:
    """The lab of hosts recorded under ``state_dir`` (default ``<repo>/.lab``)."""

    def __init__(self, state_dir: Path | str | None = None, log: Callable[[str], None] | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir else DEFAULT_STATE_DIR
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        # ---- paths
        self.key_file = self.state_dir / "id_ed25519"
        self.known_hosts_file = self.state_dir / "known_hosts"
        self.inventory_file = self.state_dir / "inventory.json"
        self.run_dir = self.state_dir / "run"

    def upper_dir(self, name: str) -> Path:
        return self.state_dir / "hosts" / name / "upper"

    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    # ---- state files
    def _ensure_key(self) -> str:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        if not self.key_file.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mmtls-lab", "-f", str(self.key_file)])
        return self.key_file.with_suffix(".pub").read_text().strip()

    def _passwords(self) -> dict[str, str]:
        path = self.state_dir / "secrets.json"
        if path.exists():
            data = json.loads(path.read_text())
            if {"mysql", "postgres", "replication"} <= data.keys():
                return data
            if {"mysql", "postgres"} <= data.keys():  # a lab from before the replica host: keep them
                data["replication"] = seeding.new_password()
                self._write_private(path, json.dumps(data, indent=2) + "\n")
                return data
        data = {"mysql": seeding.new_password(), "postgres": seeding.new_password(), "replication": seeding.new_password()}
        self._write_private(path, json.dumps(data, indent=2) + "\n")
        return data

    @staticmethod
    def _write_private(path: Path, content: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        os.chmod(tmp, 0o600)
        tmp.replace(path)

    def _record(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._pidfile(name).read_text())
        except (OSError, ValueError):
            return None

    def host_pid(self, name: str) -> int | None:
        """PID of the host's running nspawn process as recorded by ``up`` (checked, not trusted)."""
        rec = self._record(name)
        if not rec:
            return None
        pid = int(rec["pid"])
        argv = _cmdline(pid)
        if pid_alive(pid) and f"{NSPAWN_MARKER}{name}" in argv:
            return pid
        return None

    def host_key(self, name: str) -> str | None:
        """The host's ED25519 public host key, read from its own disk (not over the network)."""
        path = self.upper_dir(name) / "etc/ssh/ssh_host_ed25519_key.pub"
        try:
            key_type, blob = path.read_text().split()[:2]
        except (OSError, ValueError):
            return None
        return f"{key_type} {blob}"

    def inventory(self) -> dict[str, Any]:
        """The current ``.lab/inventory.json``."""
        try:
            return json.loads(self.inventory_file.read_text())
        except OSError as exc:
            raise LabError(f"no lab inventory at {self.inventory_file}: run `python -m lab.hosts up`") from exc

    def running_hosts(self) -> list[str]:
        """Names of hosts whose recorded nspawn process runs."""
        if not self.run_dir.is_dir():
            return []
        names = sorted(p.stem for p in self.run_dir.glob("*.json") if p.stem != "lab")
        return [n for n in names if self.host_pid(n)]

    # ---- ssh / netns
    def _address(self, host: str) -> str:
        if host.count(".") == 3:
            return host
        with contextlib.suppress(LabError, KeyError):
            return self.inventory()["hosts"][host]["address"]
        return naming.address_of(host)

    def ssh_argv(self, host: str, command: str | None = None) -> list[str]:
        """The system ``ssh`` command line for ``host`` (lab key, pinned host keys)."""
        argv = [
            "ssh",
            "-i", str(self.key_file),
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts_file}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "HostKeyAlgorithms=ssh-ed25519",
            "-o", "ConnectTimeout=5",
            "-o", "LogLevel=ERROR",
            f"root@{self._address(host)}",
        ]  # fmt: skip
        if command is not None:
            argv.append(command)
        return argv

    def ssh(
        self,
        host: str,
        command: str,
        *,
        input: str | bytes | None = None,  # noqa: A002 - subprocess's name
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` (a shell string) on ``host`` as root over real SSH."""
        data = input.decode() if isinstance(input, bytes) else input
        proc = subprocess.run(
            self.ssh_argv(host, command), input=data, text=True, capture_output=True, timeout=timeout,
            stdin=None if data is not None else subprocess.DEVNULL,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise LabError(f"ssh {host} {command!r} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}".rstrip())
        return proc

    def netns_exec(
        self,
        host: str,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,  # noqa: A002
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (a VM program) inside ``host``'s network namespace, for probing."""
        cmd = ["ip", "netns", "exec", naming.NETNS_PREFIX + host, *argv]
        proc = subprocess.run(cmd, text=True, capture_output=True, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise LabError(f"{shlex.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    # ---- up
    def up(
        self,
        nodes: int | None = None,
        extra: Iterable[str] | None = None,
        timeout: float = BOOT_TIMEOUT,
    ) -> dict[str, Any]:
        """Bring the lab to ``nodes`` Mattermost nodes + proxy + databases + ``extra`` hosts.

        Running healthy hosts are kept (only verified); anything else, including
        what a killed earlier run left, is cleared and started fresh. Returns
        the inventory. ``None`` keeps the running lab's value (default 3 / none).
        """
        with _exclusive():
            return self._up(nodes, extra, timeout)

    def _up(self, nodes: int | None, extra: Iterable[str] | None, timeout: float) -> dict[str, Any]:
        started = time.monotonic()
        previous = self._plan_record()
        if nodes is None:
            nodes = previous.get("nodes", 3)
        extra_list = list(previous.get("extra", [])) if extra is None else [e for e in extra if e]
        hosts = naming.plan(nodes, extra_list)
        wanted = {h.name for h in hosts}

        base = base_image.ensure_base(self.log)
        pubkey = self._ensure_key()
        passwords = self._passwords()
        self.run_dir.mkdir(parents=True, exist_ok=True)

        keep = {n for n in self.running_hosts() if n in wanted and self._healthy(n)}
        if previous.get("nodes") not in (None, nodes):
            # The proxy's "before" site lists every node: a new node set needs a new proxy.
            keep.discard("proxy")
        self._clear(keep=keep)
        self._ensure_bridge(fresh=not keep)
        self._write_plan(nodes, extra_list)

        new = [h for h in hosts if h.name not in keep]
        if keep:
            self.log(f"lab: keeping running hosts: {', '.join(sorted(keep))}")
        for h in new:
            self._start_host(h, hosts, base, pubkey, passwords)
        if new:
            self.log(f"lab: booting {', '.join(h.name for h in new)}")
        self._wait_ready(hosts, [h.name for h in new], timeout)
        if new and keep:
            # Kept hosts learn the names of the new ones (the lab has no DNS).
            for name in sorted(keep):
                self.ssh(name, "cat > /etc/hosts", input=seeding.render_hosts_file(hosts, name))
        inv = self._write_inventory(hosts, passwords)
        self.log(f"lab: up in {time.monotonic() - started:.1f}s ({len(hosts)} hosts, inventory {self.inventory_file})")
        return inv

    def _plan_record(self) -> dict[str, Any]:
        try:
            return json.loads((self.run_dir / "lab.json").read_text())
        except (OSError, ValueError):
            return {}

    def _write_plan(self, nodes: int, extra: list[str]) -> None:
        (self.run_dir / "lab.json").write_text(json.dumps({"nodes": nodes, "extra": extra}) + "\n")

    def _healthy(self, name: str) -> bool:
        """A running host we can keep: its namespace, link and SSH with the known key work."""
        spec = naming.spec(name)
        if spec.netns not in netns_names() or spec.veth not in link_names() or not self.host_key(name):
            return False
        self._write_known_hosts([spec])
        # A host whose first-boot seeding failed is not worth keeping.
        check = "! systemctl is-failed --quiet mmtls-lab-seed.service mmtls-lab-seed-sql.service"
        proc = subprocess.run(self.ssh_argv(name, check), capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        return proc.returncode == 0

    def _ensure_bridge(self, fresh: bool) -> None:
        links = link_names()
        if fresh and BRIDGE in links:
            _run(["ip", "link", "del", BRIDGE])
            links.discard(BRIDGE)
        if BRIDGE not in links:
            _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
            _run(["ip", "addr", "add", f"{GATEWAY}/{PREFIX_LEN}", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])

    def _start_host(
        self, h: HostSpec, hosts: list[HostSpec], base: Path, pubkey: str, passwords: dict[str, str]
    ) -> None:
        upper = self.upper_dir(h.name)
        seeding.reset_upper(upper)
        upper.mkdir(parents=True)
        seeding.stage_host(upper, base, h, hosts, passwords, pubkey)

        # Network: a namespace per host, a veth into the bridge, the address from the name.
        _run(["ip", "netns", "add", h.netns])
        _run(["ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "address", h.mac, "netns", h.netns])
        _run(["ip", "link", "set", h.veth, "master", BRIDGE, "up"])
        ns = ["ip", "-n", h.netns]
        _run([*ns, "link", "set", "lo", "up"])
        _run([*ns, "addr", "add", f"{h.address}/{PREFIX_LEN}", "dev", "eth0"])
        _run([*ns, "link", "set", "eth0", "up"])
        _run([*ns, "route", "add", "default", "via", GATEWAY])

        cgroups = [root / h.name for root in cgroup_roots()]
        for d in cgroups:
            d.mkdir(parents=True, exist_ok=True)
        argv = [
            shutil.which("systemd-nspawn") or "systemd-nspawn",
            "--quiet",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--console=read-only",
            f"--machine={h.machine}",
            f"--hostname={h.name}",
            "-D", str(base),
            f"--overlay={base}:{upper}:/",
            f"--network-namespace-path={NETNS_DIR}/{h.netns}",
            "--capability=CAP_NET_ADMIN",
            "--resolv-conf=off",
            "--link-journal=no",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")}
        env["SYSTEMD_NSPAWN_API_VFS_WRITABLE"] = "network"
        console = open(self.run_dir / f"{h.name}.console.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, preexec_fn=lambda: _enter_cgroups(cgroups),  # noqa: PLW1509 - single-threaded here
            )  # fmt: skip
        finally:
            console.close()
        record = {"pid": proc.pid, "base": str(base), "address": h.address, "started": time.time()}
        self._pidfile(h.name).write_text(json.dumps(record) + "\n")

    def _wait_ready(self, hosts: list[HostSpec], new: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # 1. each new host made its host key and sshd answers
        for h in hosts:
            while not (self.host_key(h.name) and _tcp_open(h.address, 22)):
                if not self.host_pid(h.name):
                    raise LabError(f"host {h.name}: nspawn exited; see {self.run_dir / (h.name + '.console.log')}")
                if time.monotonic() > deadline:
                    raise LabError(f"host {h.name}: no sshd after {timeout:.0f}s")
                time.sleep(0.2)
        self._write_known_hosts(hosts)

        # 2. each new host reached its seeded state (kept hosts: SSH works)
        def wait(h: HostSpec) -> None:
            check = "/usr/local/lib/mmtls-lab/ready.sh" if h.name in new else "true"
            while True:
                proc = self.ssh(h.name, check, check=False, timeout=30)
                if proc.returncode == 0:
                    return
                if proc.returncode == 2:
                    raise LabError(f"host {h.name}: seeding failed:\n{proc.stderr}")
                if time.monotonic() > deadline:
                    raise LabError(f"host {h.name}: not ready after {timeout:.0f}s: {proc.stderr.strip()}")
                time.sleep(0.5)

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            for fut in [pool.submit(wait, h) for h in hosts]:
                fut.result()

    def _write_known_hosts(self, hosts: list[HostSpec]) -> None:
        lines = []
        for h in hosts:
            key = self.host_key(h.name)
            if key:
                lines.append(f"{h.name},{h.address} {key}")
        # Merge with entries for other running hosts so concurrent callers keep working.
        existing = {}
        with contextlib.suppress(OSError):
            for line in self.known_hosts_file.read_text().splitlines():
                if line.strip():
                    existing[line.split()[0].split(",")[0]] = line
        for line in lines:
            existing[line.split()[0].split(",")[0]] = line
        running = set(self.running_hosts()) | {h.name for h in hosts}
        content = "".join(f"{v}\n" for k, v in sorted(existing.items()) if k in running)
        tmp = self.known_hosts_file.with_name("known_hosts.tmp")
        tmp.write_text(content)
        tmp.replace(self.known_hosts_file)

    def _write_inventory(self, hosts: list[HostSpec], passwords: dict[str, str]) -> dict[str, Any]:
        inv: dict[str, Any] = {
            "subnet": SUBNET,
            "gateway": GATEWAY,
            "bridge": BRIDGE,
            "sshUser": "root",
            "sshPrivateKeyFile": str(self.key_file.resolve()),
            "hosts": {h.name: {"address": h.address, "port": 22, "hostKey": self.host_key(h.name)} for h in hosts},
            "databases": {
                "mysql": {"host": "mariadb", "name": "mattermost", "user": "mmuser", "password": passwords["mysql"]},
                "postgres": {
                    "host": "postgres", "name": "mattermost", "user": "mmuser", "password": passwords["postgres"],
                },
            },
        }  # fmt: skip
        self._write_private(self.inventory_file, json.dumps(inv, indent=2) + "\n")
        return inv

    # ---- down / clear
    def _leftover_names(self) -> set[str]:
        """Every host name any trace of a lab (this or a killed run) exists for."""
        names: set[str] = set()
        names |= {n[len(naming.NETNS_PREFIX) :] for n in netns_names() if n.startswith(naming.NETNS_PREFIX)}
        names |= {n[len(naming.VETH_PREFIX) :] for n in link_names() if n.startswith(naming.VETH_PREFIX)}
        for root in cgroup_roots():
            if root.is_dir():
                names |= {p.name for p in root.iterdir() if p.is_dir()}
        if PROPAGATE_DIR.is_dir():
            names |= {
                p.name[len(naming.MACHINE_PREFIX) :] for p in PROPAGATE_DIR.iterdir()
                if p.name.startswith(naming.MACHINE_PREFIX)
            }  # fmt: skip
        names |= set(lab_nspawn_pids())
        hosts_dir = self.state_dir / "hosts"
        if hosts_dir.is_dir():
            names |= {p.name for p in hosts_dir.iterdir()}
        if self.run_dir.is_dir():
            names |= {p.stem for p in self.run_dir.glob("*.json") if p.stem != "lab"}
        return names

    def _clear(self, keep: set[str]) -> None:
        """Stop and remove every lab host not in ``keep``, including leftovers of killed runs."""
        doomed = sorted(self._leftover_names() - keep)
        if doomed:
            self.log(f"lab: clearing {', '.join(doomed)}")
            self._stop(doomed)
        if not keep:
            if BRIDGE in link_names():
                _run(["ip", "link", "del", BRIDGE])
            for root in cgroup_roots():
                _rmdir_tree(root)

    def _stop(self, names: list[str]) -> None:
        """Stop hosts by PID (nspawn first, politely), then remove all their traces."""
        scanned = lab_nspawn_pids()
        nspawn: dict[str, int] = {}
        for name in names:
            pid = self.host_pid(name) or scanned.get(name)
            if pid:
                nspawn[name] = pid
                # SIGTERM makes nspawn power the container off cleanly.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while any(pid_alive(p) for p in nspawn.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for name in names:
            # Whatever still runs in the host's cgroups (the container's init
            # outlives a killed nspawn) is killed by PID.
            for _ in range(50):
                pids = {p for root in cgroup_roots() for p in _cgroup_pids(root / name)}
                if name in nspawn and pid_alive(nspawn[name]):
                    pids.add(nspawn[name])
                pids = {p for p in pids if pid_alive(p)}
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
            else:
                raise LabError(f"host {name}: processes survive SIGKILL: {sorted(pids)}")
        for name in names:
            self._remove_traces(name)

    def _remove_traces(self, name: str) -> None:
        spec_netns = naming.NETNS_PREFIX + name
        veth = naming.VETH_PREFIX + name
        if veth in link_names():
            _run(["ip", "link", "del", veth], check=False)
        if spec_netns in netns_names():
            _run(["ip", "netns", "del", spec_netns], check=False)
        for root in cgroup_roots():
            if not _rmdir_tree(root / name):
                raise LabError(f"host {name}: cannot remove cgroup dir {root / name}")
        shutil.rmtree(PROPAGATE_DIR / (naming.MACHINE_PREFIX + name), ignore_errors=True)
        host_dir = self.state_dir / "hosts" / name
        if host_dir.exists():
            shutil.rmtree(host_dir)
        with contextlib.suppress(FileNotFoundError):
            self._pidfile(name).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / f"{name}.console.log").unlink()

    def down(self) -> None:
        """Stop every lab host and remove all traces (netns, veths, bridge, cgroups, overlays)."""
        started = time.monotonic()
        with _exclusive():
            self._clear(keep=set())
            for path in (self.inventory_file, self.known_hosts_file, self.run_dir / "lab.json"):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        self.log(f"lab: down in {time.monotonic() - started:.1f}s")

    def reset_host(self, name: str, timeout: float = BOOT_TIMEOUT) -> dict[str, Any]:
        """Recreate one host from a fresh overlay (its "before" state; NEW host key)."""
        with _exclusive():
            return self._reset_host(name, timeout)

    def _reset_host(self, name: str, timeout: float) -> dict[str, Any]:
        hosts = naming.plan(self._plan_record().get("nodes", 3), self._plan_record().get("extra", []))
        spec = next((h for h in hosts if h.name == name), None)
        if spec is None:
            raise LabError(f"{name} is not a host of the running lab ({', '.join(h.name for h in hosts)})")
        self._stop([name])
        base = base_image.ensure_base(self.log)
        self._start_host(spec, hosts, base, self._ensure_key(), self._passwords())
        self._wait_ready(hosts, [name], timeout)
        return self._write_inventory(hosts, self._passwords())

    # ---- status
    def memory(self, name: str) -> dict[str, float]:
        """Memory of one host in MiB: proportional set size of its processes (shared
        pages split fairly), and anonymous memory and page cache of its memory cgroup."""
        mib = 1024 * 1024
        out: dict[str, float] = {}
        pss_kib = 0
        for pid in _cgroup_pids(Path("/sys/fs/cgroup/systemd") / CGROUP_NAME / name):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        pss_kib += int(line.split()[1])
        out["pssMiB"] = round(pss_kib / 1024, 1)
        stat_file = Path("/sys/fs/cgroup/memory") / CGROUP_NAME / name / "memory.stat"
        with contextlib.suppress(OSError):
            stat = dict(line.split() for line in stat_file.read_text().splitlines())
            out["rssMiB"] = round(int(stat.get("total_rss", 0)) / mib, 1)
            out["cacheMiB"] = round(int(stat.get("total_cache", 0)) / mib, 1)
        return out

    def status(self) -> dict[str, Any]:
        """Per host: pid, address, whether SSH answers, memory, overlay size."""
        hosts = {}
        leftovers = sorted(self._leftover_names() - set(self.running_hosts()))
        for name in self.running_hosts():
            spec = naming.spec(name)
            ssh_ok = self.ssh(name, "true", check=False, timeout=15).returncode == 0
            du = _run(["du", "-sm", str(self.upper_dir(name))], check=False).stdout.split()
            hosts[name] = {
                "pid": self.host_pid(name),
                "address": spec.address,
                "role": spec.role,
                "ssh": ssh_ok,
                **self.memory(name),
                "overlayMiB": int(du[0]) if du else None,
            }
        return {"hosts": hosts, "leftovers": leftovers, "bridge": BRIDGE in link_names()}


# --------------------------------------------------------------------------- module-level API

_default: Lab | None = None


def default_lab() -> Lab:
    """The lab under ``<repo>/.lab`` (or $MMTLS_LAB_DIR)."""
    global _default
    if _default is None:
        _default = Lab()
    return _default


def up(nodes: int | None = None, extra: Iterable[str] | None = None) -> dict[str, Any]:
    """``Lab().up``: bring the lab up; returns the inventory."""
    return default_lab().up(nodes, extra)


def down() -> None:
    """``Lab().down``."""
    default_lab().down()


def ssh(host: str, command: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``Lab().ssh``: run a shell command on a lab host over real SSH."""
    return default_lab().ssh(host, command, **kw)


def netns_exec(host: str, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """``Lab().netns_exec``: run a VM program inside a host's network namespace."""
    return default_lab().netns_exec(host, argv, **kw)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.hosts", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    up_p = sub.add_parser("up", help="build/reuse the base, boot the hosts, write .lab/inventory.json")
    up_p.add_argument(
        "--nodes", type=int, default=None, help="Mattermost nodes mm1..mmN (default: running lab's, else 3)"
    )
    up_p.add_argument("--extra", default=None, help="extra named hosts, comma separated (e.g. plugin,gitlab)")
    sub.add_parser("down", help="stop all hosts and remove every trace")
    sub.add_parser("status", help="print hosts, memory, leftovers as JSON")
    r = sub.add_parser("reset-host", help="recreate one host from a fresh overlay")
    r.add_argument("name")
    s = sub.add_parser("ssh", help="run a command on a host over the lab's pinned SSH")
    s.add_argument("name")
    s.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("build-base", help="build (or find) the cached base and print its path")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("lab: must run as root (network namespaces, cgroups, systemd-nspawn)", file=sys.stderr)
        return 2
    lab = default_lab()
    try:
        if args.cmd == "up":
            extra = None if args.extra is None else [e.strip() for e in args.extra.split(",")]
            lab.up(args.nodes, extra)
            print(lab.inventory_file)
        elif args.cmd == "down":
            lab.down()
        elif args.cmd == "status":
            print(json.dumps(lab.status(), indent=2))
        elif args.cmd == "reset-host":
            lab.reset_host(args.name)
        elif args.cmd == "ssh":
            return subprocess.call(lab.ssh_argv(args.name, " ".join(args.command) if args.command else None))
        elif args.cmd == "build-base":
            print(base_image.ensure_base(lab.log))
    except (LabError, base_image.BaseError, naming.LabNameError) as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

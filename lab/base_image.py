"""The cached Debian base every lab host boots from.

Owns: the package list, reading the mirror apt already uses on this machine,
the cache path (``/var/cache/mattermost-tls-lab/base-<hash>``, outside the
tracked tree), installing debootstrap/systemd-nspawn on the VM when missing,
and building the base once (``lab/build-base.sh``) under a lock, atomically.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

CACHE_DIR = Path(os.environ.get("MMTLS_LAB_CACHE", "/var/cache/mattermost-tls-lab"))
BUILD_SCRIPT = Path(__file__).with_name("build-base.sh")
SUITE = "bookworm"

# Everything the hosts need, from Debian packages only. Changing this list (or
# build-base.sh, or the mirrors) gives a new hash and so a new base.
PACKAGES: tuple[str, ...] = (
    "openssh-server",
    "openssh-client",
    "iproute2",
    "iputils-ping",
    "iptables",
    "ufw",
    "nginx",
    "mariadb-server",
    "mariadb-client",
    "postgresql",
    "postgresql-client",
    "procps",
    "sudo",
    "less",
    "curl",
    "openssl",
    "ca-certificates",
    "tcpdump",
    "netcat-openbsd",
    "ruby",
    "python3",
    "python3-pymysql",
    "python3-psycopg2",
)

# What the VM itself needs to build and run the lab.
VM_PACKAGES: dict[str, str] = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "curl": "curl",
    # Evidence of encryption is a capture on the bridge or in a host's namespace.
    "tcpdump": "tcpdump",
}


class BaseError(RuntimeError):
    """The base could not be found or built."""


def _apt_source_uris(text: str) -> list[tuple[str, list[str]]]:
    """(uri, suites) pairs from one apt sources file, deb822 or one-line."""
    found: list[tuple[str, list[str]]] = []
    if re.search(r"^\s*URIs\s*:", text, re.M | re.I):
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                found.append((uri, fields.get("suites", "").split()))
    else:
        for line in text.splitlines():
            parts = line.split("#", 1)[0].split()
            if not parts or parts[0] != "deb":
                continue
            parts = [p for p in parts[1:] if not p.startswith("[")]
            if len(parts) >= 2:
                found.append((parts[0], [parts[1]]))
    return found


def apt_mirrors(root: Path = Path("/etc/apt")) -> tuple[str, str | None]:
    """(debian mirror, security mirror or None) read from this machine's apt sources."""
    files = [root / "sources.list"]
    sources_d = root / "sources.list.d"
    if sources_d.is_dir():
        files += sorted(p for p in sources_d.iterdir() if p.suffix in (".list", ".sources"))
    main: str | None = None
    security: str | None = None
    for path in files:
        if not path.is_file():
            continue
        for uri, suites in _apt_source_uris(path.read_text(errors="replace")):
            uri = uri.rstrip("/")
            if f"{SUITE}-security" in suites and security is None:
                security = uri
            elif SUITE in suites and main is None:
                main = uri
    if main is None:
        raise BaseError(f"no apt source for Debian {SUITE} found under {root}")
    return main, security


def base_hash(mirror: str, security: str | None) -> str:
    """Identity of a base: build script + package list + mirrors."""
    h = hashlib.sha256()
    h.update(BUILD_SCRIPT.read_bytes())
    h.update("\n".join(PACKAGES).encode())
    h.update(f"\n{mirror}\n{security or '-'}\n".encode())
    return h.hexdigest()[:16]


def base_path() -> Path:
    """Where the base for the current script/packages/mirrors lives (built or not)."""
    mirror, security = apt_mirrors()
    return CACHE_DIR / f"base-{base_hash(mirror, security)}"


def ensure_vm_tools(log=print) -> None:
    """Install the VM-side tools with apt when missing (apt-get update first)."""
    missing = sorted({pkg for tool, pkg in VM_PACKAGES.items() if shutil.which(tool) is None})
    if not missing:
        return
    log(f"lab: installing {' '.join(missing)} with apt")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True, env=env)


def ensure_base(log=print) -> Path:
    """Return the ready base, building it first when it is not cached yet."""
    ensure_vm_tools(log)
    mirror, security = apt_mirrors()
    final = CACHE_DIR / f"base-{base_hash(mirror, security)}"
    if (final / ".mmtls-base-ok").is_file():
        return final
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # One builder at a time; a second caller waits and then finds the base.
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".mmtls-base-ok").is_file():
            return final
        tmp = CACHE_DIR / f"{final.name}.tmp"
        if tmp.exists():
            _remove_tree(tmp)
        if final.exists():
            _remove_tree(final)
        log(f"lab: building base {final} from {mirror} (a few minutes, once)")
        start = time.monotonic()
        cmd = ["sh", str(BUILD_SCRIPT), str(tmp), mirror, security or "-", *PACKAGES]
        proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
        if proc.returncode != 0:
            _remove_tree(tmp)
            raise BaseError(f"base build failed (exit {proc.returncode}); see the output above")
        (tmp / ".mmtls-base-ok").write_text(f"built in {time.monotonic() - start:.0f}s\n")
        tmp.rename(final)
        log(f"lab: base built in {time.monotonic() - start:.0f}s")
        _prune_old_bases(keep=final, log=log)
        return final


def _bases_in_use() -> set[str]:
    """Base directories some running systemd-nspawn boots from (``-D BASE``)."""
    used: set[str] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"systemd-nspawn") and b"-D" in argv:
            i = argv.index(b"-D")
            if i + 1 < len(argv):
                used.add(argv[i + 1].decode(errors="replace"))
    return used


def _prune_old_bases(keep: Path, log=print) -> None:
    """Remove bases of earlier build scripts/package lists that no running host uses."""
    used = _bases_in_use()
    for old in CACHE_DIR.glob("base-*"):
        if old != keep and old.is_dir() and str(old) not in used:
            log(f"lab: removing old base {old}")
            _remove_tree(old)


def _remove_tree(path: Path) -> None:
    """Remove a (possibly half-built) base, unmounting anything left under it first."""
    mounts = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(str(path) + "/")
    ]
    for mnt in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mnt], check=False)
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    print(ensure_base())

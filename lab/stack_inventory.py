"""A lab stack's `inventoryFile`: the lab (lab/hosts.py) writes each host's address, SSH host key
and port, the SSH key and user to an inventory; a lab stack names it instead of spelling them out.
Kept out of the production schema (components/config): the loader hands it the raw config
before validation, and explicit config always wins."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from components.config.fields import PROJECT, ConfigError


def merge_inventory_file(raw: dict[str, Any], inventory_file: str, base_dir: Path) -> dict[str, Any]:
    """`raw` with the inventory at `inventory_file` (relative to `base_dir`) merged in, or a
    ConfigError naming `inventoryFile` when it is missing or not JSON."""
    path = Path(inventory_file)
    if not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        raise ConfigError(
            f"{PROJECT}:inventoryFile: {path} does not exist; start the lab first (`make lab` or `python -m lab.hosts up`)"
        )
    try:
        inventory = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{PROJECT}:inventoryFile: {path} is not valid JSON ({e})") from None
    return merge_inventory(raw, inventory)


def merge_inventory(raw: dict[str, Any], inventory: Mapping[str, Any]) -> dict[str, Any]:
    """Fill addresses, host keys and the SSH key from a lab inventory; explicit config wins."""
    hosts = inventory.get("hosts", {})

    def fill(section: dict[str, Any], host: str) -> None:
        inv = hosts.get(host)
        if not inv:
            return
        section.setdefault("address", inv["address"])
        ssh = section.setdefault("ssh", {})
        ssh.setdefault("hostKey", inv.get("hostKey"))
        if inv.get("port", 22) != 22:
            ssh.setdefault("port", inv["port"])

    for node in raw.get("nodes", []) or []:
        if isinstance(node, dict) and "name" in node:
            fill(node, node["name"])
    proxy = raw.setdefault("proxy", {})
    if isinstance(proxy, dict):
        fill(proxy, proxy.get("host", "proxy"))
    db = raw.setdefault("database", {})
    if isinstance(db, dict):
        fill(db, db.get("host") or ("mariadb" if db.get("engine") == "mysql" else "postgres"))
        for key in ("replicas", "searchReplicas"):
            for rep in db.get(key) or []:
                if isinstance(rep, dict) and rep.get("host"):
                    fill(rep, rep["host"])
    for key, default in (("gitlab", "gitlab"), ("teleport", "plugin")):
        sec = raw.get(key)
        if isinstance(sec, dict) and sec.get("enabled"):
            fill(sec, sec.get("host", default))
    if "sshPrivateKey" not in raw and inventory.get("sshPrivateKeyFile"):
        raw["sshPrivateKey"] = Path(inventory["sshPrivateKeyFile"]).read_text()
    if inventory.get("sshUser"):
        raw.setdefault("ssh", {}).setdefault("user", inventory["sshUser"])
    return raw

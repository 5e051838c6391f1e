"""SSH connection arguments for one host: the program's only way in, always with a pinned host key."""

from __future__ import annotations

import pulumi
from pulumi_command import remote

from components.config import HostSsh, StackConfig
from components.ssh_keys import compact_private_key


def connection_for(cfg: StackConfig, address: str, ssh: HostSsh) -> remote.ConnectionArgs:
    """ConnectionArgs with the host key pinned (config validation guarantees one is set) and the
    private key kept secret, in its shortest form (components.ssh_keys.compact_private_key)."""
    if ssh.host_key is None:  # the schema refuses this; keep the promise even if misused
        raise ValueError(f"no host key pinned for {address}")
    return remote.ConnectionArgs(
        host=ssh.address or address,
        port=ssh.port or cfg.ssh.port,
        user=ssh.user or cfg.ssh.user,
        # keys end with a newline; config values arrive stripped
        private_key=pulumi.Output.secret(compact_private_key(cfg.ssh_private_key.get_secret_value().strip() + "\n")),
        host_key=ssh.host_key,
        dial_error_limit=5,
        per_dial_timeout=15,
    )

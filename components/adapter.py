"""From the validated StackConfig to each component's own arguments: the one place that knows
both. A component whose args are built here sees only what it uses (its config section, its SSH
connection, its secrets as secret Outputs), so it can be built and tested without a whole stack
config, and a change to another section cannot reach it.

Narrow so far: GitlabMattermost, TeleportPlugin. The others still take the StackConfig."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from components.config import StackConfig
from components.connection import connection_for
from components.gitlab import GitlabMattermostArgs
from components.pki import Pki
from components.teleport import TeleportPluginArgs


def gitlab_args(
    cfg: StackConfig, pki: Pki, dsn: pulumi.Input[str] | None, depends_on: Sequence[pulumi.Resource]
) -> GitlabMattermostArgs:
    """GitlabMattermost's args: the `gitlab` section, its connection and gitlabTlsKey (secret)."""
    gl = cfg.gitlab
    if not gl.enabled or gl.address is None:  # the schema guarantees an address when enabled
        raise ValueError("GitlabMattermost needs gitlab.enabled and gitlab.address")
    key = cfg.gitlab_tls_key
    return GitlabMattermostArgs(
        gitlab=gl,
        connection=connection_for(cfg, gl.address, gl.ssh),
        pki=pki,
        tls_key=pulumi.Output.secret(key.get_secret_value()) if key is not None else None,
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

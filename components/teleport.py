"""TeleportPlugin: the Teleport Mattermost access-request plugin's host, set up to reach
Mattermost over verified HTTPS.

Owns, on the plugin host: /etc/teleport-mattermost.toml (0600 root; the Mattermost bot token
reaches the host only inside this file's stdin-borne content), the documented systemd unit, the
stack CA in a directory of its own, the optional RBAC resource files for `tctl create -f`, and
the unit's enablement. It installs no plugin binary: when the binary is absent the unit is
enabled but not started, and the `status` output says so.

Trust for the Mattermost URL: the unit sets SSL_CERT_DIR=<caDir>:/etc/ssl/certs. Go (the
plugin's language) keeps reading the system bundle file and adds every certificate in those
directories, so this one process trusts the stack CA on top of the public roots, and nothing
else on the host does. SSL_CERT_FILE would replace the public roots (breaking a Teleport proxy
with a public certificate); the system-wide store would make every program on the host trust
the stack CA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_command import remote

from components import teleport_render
from components.config import Teleport
from components.pki import Pki
from components.platform import platform_for
from components.remote_files import ManagedFile, managed_files, run_script
from components.remote_files_render import FileSpec

UNIT = "teleport-mattermost"
UNIT_FILE = f"/etc/systemd/system/{UNIT}.service"
CA_FILE_NAME = "mattermost-transport-ca.crt"


@dataclass(frozen=True)
class TeleportPluginArgs:
    """Inputs of the plugin host (built from the stack config by components/adapter.py)."""

    teleport: Teleport
    """The validated `teleport` section (enabled, with an address)."""
    connection: remote.ConnectionArgs
    """SSH to the plugin host."""
    mattermost_url: str
    """The https URL the plugin posts to."""
    token: pulumi.Output[str]
    """The Mattermost bot token (secret)."""
    pki: Pki
    """Its CA is what the plugin trusts for the Mattermost URL."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    """What must be live before the plugin is pointed at Mattermost (the NGINX proxy)."""


class TeleportPlugin(pulumi.ComponentResource):
    """The plugin's config, unit, CA and RBAC files on its host (see the module docstring)."""

    mattermost_url: pulumi.Output[str]
    """The https URL the plugin posts to."""
    installed: dict[str, str]
    """Paths on the plugin host: config, unit, ca, and rbac/<file> when rbac is on."""
    status: pulumi.Output[str]
    """What enabling the unit found, e.g. that the plugin binary is absent."""
    ready: pulumi.Resource
    """Completes once the unit is enabled."""

    def __init__(self, name: str, args: TeleportPluginArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mattermost-tls:teleport:TeleportPlugin", name, None, opts)
        tp, conn, url = args.teleport, args.connection, args.mattermost_url
        ca_file = f"{tp.ca_dir}/{CA_FILE_NAME}"

        toml = args.token.apply(  # secret, as the token
            lambda t: teleport_render.render_plugin_toml(
                teleport_render.plugin_config(
                    addr=tp.auth_addr,
                    identity=tp.identity_file,
                    url=url,
                    token=t,
                    recipients=list(tp.recipients),
                    log_output=tp.log_output,
                    log_severity=tp.log_severity,
                )
            )
        )
        files = [
            ManagedFile(FileSpec(tp.config_file, "0600"), toml),
            ManagedFile(
                FileSpec(UNIT_FILE, "0644"),
                teleport_render.render_unit(
                    binary=tp.binary, config_file=tp.config_file, ca_dir=tp.ca_dir, platform=platform_for(tp.platform)
                ),
            ),
            ManagedFile(FileSpec(ca_file, "0644"), args.pki.ca_cert_pem),
        ]
        self.installed = {"config": tp.config_file, "unit": UNIT_FILE, "ca": ca_file}
        if tp.rbac:
            for file_name, content in teleport_render.rbac_files().items():
                path = f"{tp.rbac_dir}/{file_name}"
                files.append(ManagedFile(FileSpec(path, "0644"), content))
                self.installed[f"rbac/{file_name}"] = path

        reload = teleport_render.render_reload(UNIT, UNIT_FILE)
        installed = managed_files(
            f"{tp.host}-teleport-mattermost-files",
            connection=conn,
            files=files,
            activate=reload,
            restore_activate=reload,
            secret=True,  # the TOML carries the bot token
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        # Deleted before the files (it depends on them), so the unit is disabled while it exists.
        enable = run_script(
            f"{tp.host}-teleport-mattermost-enable",
            connection=conn,
            create=teleport_render.render_enable(UNIT, tp.binary),
            delete=teleport_render.render_disable(UNIT),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[installed]),
        )
        self.ready = enable
        self.status = enable.stdout
        self.mattermost_url = pulumi.Output.from_input(url)
        self.register_outputs(
            {"mattermost_url": self.mattermost_url, "installed": self.installed, "status": self.status}
        )

"""Pure renderers for the Teleport Mattermost access-request plugin host.

Owns the plugin's TOML (built from a dict by a TOML serializer, never by string pasting), the
systemd unit (template beside this module), the optional RBAC resource files for `tctl create
-f`, and the shell that enables the unit and puts its enablement back on destroy. Plain values
in, text out; `components/teleport.py` wires them to hosts.
"""

from __future__ import annotations

from typing import Any

import tomli_w

from components.platform import DEBIAN, Platform
from components.remote_files_render import STATE_DIR
from components.shell import fill, script, template

PID_FILE = "/var/run/teleport-mattermost.pid"
"""The pid file of the documented ExecStart."""

RBAC_FILES = {
    "access-plugin.yaml": "teleport-rbac-access-plugin.yaml",
    "access-plugin-impersonator.yaml": "teleport-rbac-access-plugin-impersonator.yaml",
    "editor-request-rbac.yaml": "teleport-rbac-editor-request.yaml",
}
"""Installed file name -> template, the resources Teleport's plugin guide has `tctl create -f`."""


def plugin_config(
    *,
    addr: str,
    identity: str,
    url: str,
    token: str,
    recipients: list[str],
    log_output: str,
    log_severity: str,
) -> dict[str, Any]:
    """The plugin's configuration as data (what the TOML must parse back to)."""
    return {
        "teleport": {"addr": addr, "identity": identity, "refresh_identity": True},
        "mattermost": {"url": url, "token": token, "recipients": list(recipients)},
        "log": {"output": log_output, "severity": log_severity},
    }


def render_plugin_toml(config: dict[str, Any]) -> str:
    """/etc/teleport-mattermost.toml. The token is in it: the caller keeps the result secret."""
    return (
        "# Teleport Mattermost plugin, managed by mattermost-transport-encryption:\n"
        "# change the stack config and run `pulumi up` instead of editing this file.\n" + tomli_w.dumps(config)
    )


def ssl_cert_dir(ca_dir: str, platform: Platform = DEBIAN) -> str:
    """SSL_CERT_DIR for the plugin: its own CA directory first, then the host's usual one.

    Go reads the system bundle FILE (`Platform.system_bundle`) whether or not
    SSL_CERT_DIR is set, and SSL_CERT_DIR only replaces the directories it scans, so this adds the
    stack CA for this one process and keeps every public root. SSL_CERT_FILE would instead
    replace the bundle and leave the plugin trusting the stack CA alone.
    """
    return f"{ca_dir}:{platform.system_cert_dir}"


def render_unit(
    *, binary: str, config_file: str, ca_dir: str, pid_file: str = PID_FILE, platform: Platform = DEBIAN
) -> str:
    """The documented systemd unit for the plugin (paths are config-validated, plain)."""
    for value in (binary, config_file, ca_dir, pid_file):
        # systemd expands $ and % and splits on whitespace; config already forbids these
        if not value.startswith("/") or any(c in value for c in " \t\n\"'\\$%;"):
            raise ValueError(f"not a plain absolute path for a unit file: {value!r}")
    return fill(
        template("teleport-mattermost.service"),
        {
            "binary": binary,
            "config_file": config_file,
            "pid_file": pid_file,
            # same file through Debian's /var/run -> /run link; systemd warns about the legacy path
            "pid_file_run": pid_file.replace("/var/run/", "/run/", 1),
            "ssl_cert_dir": ssl_cert_dir(ca_dir, platform),
        },
    )


def rbac_files() -> dict[str, str]:
    """File name -> YAML content of the optional RBAC resources."""
    return {name: template(tpl) for name, tpl in RBAC_FILES.items()}



def render_reload(unit: str, unit_file: str) -> str:
    """`activate`/`restore_activate` for the plugin's files: systemd re-reads the unit, and a
    running plugin restarts onto its new config, token or CA (try-restart leaves a stopped one
    stopped)."""
    return script("teleport-reload.sh", unit_file=unit_file, unit=f"{unit}.service")


def _marker(unit: str, state_dir: str) -> str:
    return f"{state_dir}/{unit}.before"


def render_enable(unit: str, binary: str, state_dir: str = STATE_DIR) -> str:
    """Enable (not start) the unit. The first run records whether it was enabled and active
    before, so `render_disable` can put that back. Never fails for a missing binary: says so."""
    return script(
        "teleport-enable.sh",
        state=state_dir,
        marker=_marker(unit, state_dir),
        unit=f"{unit}.service",
        binary=binary,
        present=f"{unit}.service enabled; plugin binary {binary} present",
        absent=f"{unit}.service enabled but not started: the plugin binary {binary} is absent; install it, then run: ",
        start=f"systemctl start {unit}.service",
    )


def render_disable(unit: str, state_dir: str = STATE_DIR) -> str:
    """Undo `render_enable`: disable (and stop) the unit only if it was not enabled (and not
    running) before this program enabled it."""
    # remote_files removes its state dir once empty; this marker must not keep it alive
    return script("teleport-disable.sh", marker=_marker(unit, state_dir), unit=f"{unit}.service", state=state_dir)

"""The stand-in's entry point and lifecycle.

Owns: the command line (``--config``, ``--version``, ``version``), loading and
validating the configuration, building the subsystems listed in
``SUBSYSTEMS`` (all constructed first, so a bad setting refuses the start
before anything connects), starting them in order, telling systemd READY=1
only once everything serves, and a clean stop on SIGTERM/SIGINT.

Adding cluster gossip later means adding a module with ``create(ctx)`` and
naming it in ``SUBSYSTEMS`` (between "database" and "web"): it can use
``ctx.subsystems["database"].query(...)`` to register itself.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import socket
import sys

from . import VERSION
from . import config as configmod
from .runtime import Context, Logger, StartupError, sd_notify

SUBSYSTEMS: tuple[str, ...] = ("database", "gossip", "web")

BANNER = (
    f"Version: {VERSION}\n"
    "Build Number: standin\n"
    "This is the mattermost-transport-encryption lab STAND-IN for the Mattermost server, not Mattermost.\n"
)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mattermost", description="Mattermost server STAND-IN (mattermost-transport-encryption lab)."
    )
    p.add_argument(
        "--config", "-c", help="config.json path (default: $MM_CONFIG or /opt/mattermost/config/config.json)"
    )
    p.add_argument("--version", action="store_true", help="print the stand-in version and exit")
    p.add_argument("command", nargs="?", default="server", choices=("server", "version"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM; return the process exit code."""
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    if args.version or args.command == "version":
        sys.stdout.write(BANNER)
        return 0
    boot_log = Logger("info")
    try:
        cfg = configmod.load(args.config)
    except configmod.ConfigError as exc:
        boot_log.error(
            "Mattermost stand-in refuses to start: invalid configuration", error=exc.message, error_id=exc.id
        )
        return 1
    logs = cfg.section("LogSettings")
    log = Logger(logs["ConsoleLevel"] if logs["EnableConsole"] else "fatal")
    ctx = Context(config=cfg, log=log)
    log.info(
        "Server is initializing...",
        version=VERSION,
        hostname=socket.gethostname(),
        config=cfg.path,
        env_overrides=sorted(cfg.from_env),
    )

    def _stop(signum: int, _frame: object) -> None:
        ctx.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    started = []
    try:
        built = [importlib.import_module(f".{name}", __package__).create(ctx) for name in SUBSYSTEMS]
        for sub in built:
            if ctx.stopping.is_set():
                raise StartupError("stopped during startup")
            sub.start()
            ctx.subsystems[sub.name] = sub
            started.append(sub)
    except StartupError as exc:
        log.error("Mattermost stand-in refuses to start", error=str(exc))
        for sub in reversed(started):
            sub.stop()
        return 1
    sd_notify("READY=1\nSTATUS=serving")
    log.info("Server is started")
    ctx.stopping.wait()
    sd_notify("STOPPING=1")
    log.info("Stopping Server...")
    for sub in reversed(started):
        sub.stop()
    log.info("Server stopped")
    return 0

"""Process plumbing shared by the stand-in's subsystems.

Owns: Mattermost-like JSON log lines on stdout (journald captures them), the
systemd ``sd_notify`` protocol (READY=1 only once serving), and the
``Context``/``Subsystem`` contract every subsystem module implements.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .config import Config

_LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40, "fatal": 50}


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d} Z"


class Logger:
    """Mattermost console-style structured logging: one JSON object per line."""

    def __init__(self, level: str = "info", stream=None, file_path: str | None = None) -> None:
        self.min = _LEVELS.get(level.lower(), 20)
        self.stream = stream or sys.stdout
        self.file = None
        self.lock = threading.Lock()
        if file_path:
            try:
                self.file = open(file_path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
            except OSError:
                self.file = None

    def log(self, level: str, msg: str, **fields: Any) -> None:
        """Write one line if ``level`` is enabled."""
        if _LEVELS[level] < self.min:
            return
        record = {
            "timestamp": _timestamp(),
            "level": level,
            "msg": msg,
            "caller": "standin",
            **fields,
        }
        line = json.dumps(record, default=str)
        with self.lock:
            print(line, file=self.stream, flush=True)
            if self.file:
                print(line, file=self.file, flush=True)

    def debug(self, msg: str, **f: Any) -> None:
        self.log("debug", msg, **f)

    def info(self, msg: str, **f: Any) -> None:
        self.log("info", msg, **f)

    def warn(self, msg: str, **f: Any) -> None:
        self.log("warn", msg, **f)

    def error(self, msg: str, **f: Any) -> None:
        self.log("error", msg, **f)


def sd_notify(state: str) -> bool:
    """Send ``state`` to systemd's $NOTIFY_SOCKET; False when not under Type=notify."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(path)
        sock.sendall(state.encode())
    return True


class StartupError(Exception):
    """A subsystem cannot start; Mattermost would exit non-zero."""


class Subsystem(Protocol):
    """One part of the server with its own lifecycle (database, web, cluster...)."""

    name: str

    def start(self) -> None:
        """Start serving; raise StartupError to make the server refuse to start."""

    def stop(self) -> None:
        """Stop; called in reverse start order."""

    def status(self) -> dict[str, Any]:
        """A JSON-able status shown by /standin/status."""


@dataclass
class Context:
    """What subsystems share: settings, logger, each other (by name), shutdown flag."""

    config: Config
    log: Logger
    subsystems: dict[str, Subsystem] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    started_at: float = field(default_factory=time.time)

    def status(self) -> dict[str, Any]:
        """Status of every started subsystem."""
        return {name: sub.status() for name, sub in self.subsystems.items()}

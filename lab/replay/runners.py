"""Where a remote.Command's text actually runs.

Owns `SshRunner` (real SSH with paramiko, behaving like pulumi-command's remote provider: one
connection and one session per command, the string run by the login shell via `exec`, no PTY,
stdin written then closed, `environment` as env requests whose refusal fails the command,
`PULUMI_COMMAND_STDOUT/STDERR` sent optimistically, host key pinned when `hostKey` is given and
ignored otherwise) and `LocalRunner` (the same contract with `/bin/sh -c` on this machine, for
tests of the engine without hosts). Both count connections and sessions.
"""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from paramiko.common import cMSG_CHANNEL_REQUEST
from paramiko.message import Message

PREVIOUS_STDOUT = "PULUMI_COMMAND_STDOUT"
PREVIOUS_STDERR = "PULUMI_COMMAND_STDERR"


class RunnerError(Exception):
    """The command could not be started (dial, host key, auth, env request); message as the provider's."""


@dataclass
class RunResult:
    exit_status: int | None
    """None when the remote side sent no exit status (killed by a signal)."""
    stdout: str
    stderr: str
    combined: str
    """stdout and stderr interleaved as received (what the provider puts in its error)."""

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def describe_exit(self) -> str:
        if self.exit_status is None:
            return "wait: remote command exited without exit status or exit signal"
        return f"Process exited with status {self.exit_status}"


class CommandRunner(Protocol):
    connections: int
    sessions: int

    def run(
        self,
        connection: dict[str, Any],
        command: str,
        *,
        stdin: str | None,
        environment: dict[str, str] | None,
        previous: tuple[str, str] | None,
    ) -> RunResult: ...


@dataclass
class _Counters:
    connections: int = 0
    sessions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, connections: int = 0, sessions: int = 0) -> None:
        with self.lock:
            self.connections += connections
            self.sessions += sessions


class LocalRunner:
    """Runs command text with /bin/sh on this machine (tests); records every call."""

    def __init__(self) -> None:
        self._counters = _Counters()
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def connections(self) -> int:
        return self._counters.connections

    @property
    def sessions(self) -> int:
        return self._counters.sessions

    def run(
        self,
        connection: dict[str, Any],
        command: str,
        *,
        stdin: str | None,
        environment: dict[str, str] | None,
        previous: tuple[str, str] | None,
    ) -> RunResult:
        self._counters.count(connections=1, sessions=1)
        env = dict(os.environ)
        env.update(environment or {})
        if previous:
            if previous[0]:
                env[PREVIOUS_STDOUT] = previous[0]
            if previous[1]:
                env[PREVIOUS_STDERR] = previous[1]
        with self._lock:
            self.calls.append(
                {"host": connection.get("host"), "command": command, "stdin": stdin, "environment": environment}
            )
        proc = subprocess.run(
            ["/bin/sh", "-c", command], input=stdin or "", capture_output=True, text=True, env=env, check=False
        )
        return RunResult(proc.returncode, proc.stdout, proc.stderr, proc.stdout + proc.stderr)


def load_client_key(text: str, password: str | None = None) -> paramiko.PKey:
    """Any PEM/OpenSSH private key (PKCS#1, SEC1, PKCS#8, OpenSSH) as a paramiko key."""
    secret = password.encode() if password else None
    data = text.encode()
    try:
        key = serialization.load_ssh_private_key(data, password=secret)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=secret)
        except (ValueError, TypeError) as exc:
            raise RunnerError(f"ssh: cannot parse private key: {exc}") from None
    openssh = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    cls: type[paramiko.PKey]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        cls = paramiko.Ed25519Key
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        cls = paramiko.ECDSAKey
    elif isinstance(key, rsa.RSAPrivateKey):
        cls = paramiko.RSAKey
    else:
        raise RunnerError(f"ssh: unsupported private key type {type(key).__name__}")
    return cls.from_private_key(io.StringIO(openssh))


def parse_host_key(text: str) -> tuple[str, bytes]:
    """`ssh-ed25519 AAAA... [comment]` -> (key type, key blob)."""
    parts = text.split()
    if len(parts) < 2:
        raise RunnerError(f"ssh: cannot parse host key {text!r}: want authorized_keys format")
    try:
        return parts[0], base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise RunnerError(f"ssh: cannot parse host key {text!r}: bad base64") from None


def _algorithms_for(key_type: str) -> list[str]:
    # Make the server present the pinned key (it may hold several host keys).
    if key_type == "ssh-rsa":
        return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    return [key_type]


class SshRunner:
    """pulumi-command's remote execution, over paramiko."""

    def __init__(self, retry_delay: float = 0.5) -> None:
        self._counters = _Counters()
        self.retry_delay = retry_delay

    @property
    def connections(self) -> int:
        return self._counters.connections

    @property
    def sessions(self) -> int:
        return self._counters.sessions

    def run(
        self,
        connection: dict[str, Any],
        command: str,
        *,
        stdin: str | None,
        environment: dict[str, str] | None,
        previous: tuple[str, str] | None,
    ) -> RunResult:
        transport = self._dial(connection)
        try:
            channel = transport.open_session(timeout=_timeout(connection))
            self._counters.count(sessions=1)
            try:
                return self._exec(channel, command, stdin, environment, previous)
            finally:
                channel.close()
        finally:
            transport.close()

    def _dial(self, conn: dict[str, Any]) -> paramiko.Transport:
        if conn.get("proxy"):
            raise RunnerError("the replay engine does not support connection.proxy (a jump host)")
        host = str(conn.get("host") or "")
        port = int(conn.get("port") or 22)
        limit = int(conn.get("dialErrorLimit") if conn.get("dialErrorLimit") is not None else 10)
        dials = 0
        delay = self.retry_delay
        while True:
            dials += 1
            try:
                return self._connect(host, port, conn)
            except (OSError, paramiko.SSHException, EOFError) as exc:
                if isinstance(exc, paramiko.AuthenticationException):
                    raise RunnerError(f"ssh: handshake failed: ssh: unable to authenticate: {exc}") from None
                if limit != -1 and dials > limit:
                    raise RunnerError(
                        f"Dial: after {dials - 1} failed attempts: dial tcp {host}:{port}: {exc}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 1.5, 5.0)

    def _connect(self, host: str, port: int, conn: dict[str, Any]) -> paramiko.Transport:
        timeout = _timeout(conn)
        sock = socket.create_connection((host, port), timeout=timeout)
        self._counters.count(connections=1)
        transport = paramiko.Transport(sock)
        try:
            pinned = parse_host_key(conn["hostKey"]) if conn.get("hostKey") else None
            if pinned:
                transport.get_security_options().key_types = _algorithms_for(pinned[0])
            transport.start_client(timeout=timeout)
            server_key = transport.get_remote_server_key()
            if pinned and (server_key.get_name(), server_key.asbytes()) != pinned:
                # Deterministic, so no retry: credentials are never offered to an unknown host.
                raise RunnerError(
                    f"ssh: handshake failed: ssh: host key mismatch for {host}:{port} "
                    f"(pinned {pinned[0]}, server offered {server_key.get_name()} {server_key.get_base64()[:24]}...)"
                )
            user = str(conn.get("user") or "root")
            if conn.get("privateKey"):
                transport.auth_publickey(user, load_client_key(conn["privateKey"], conn.get("privateKeyPassword")))
            elif conn.get("password"):
                transport.auth_password(user, conn["password"])
            else:
                raise RunnerError("ssh: no authentication method: set connection.privateKey or connection.password")
            return transport
        except BaseException:
            transport.close()
            raise

    def _exec(
        self,
        channel: paramiko.Channel,
        command: str,
        stdin: str | None,
        environment: dict[str, str] | None,
        previous: tuple[str, str] | None,
    ) -> RunResult:
        for name, value in (environment or {}).items():
            if not _setenv(channel, name, value, want_reply=True):
                raise RunnerError(
                    f'could not set environment variable "{name}": ssh: setenv failed '
                    "(sshd accepts only the names listed in AcceptEnv)"
                )
        if previous:
            # The provider sets these optimistically and only warns when sshd refuses them.
            for name, value in ((PREVIOUS_STDOUT, previous[0]), (PREVIOUS_STDERR, previous[1])):
                if value:
                    _setenv(channel, name, value, want_reply=False)
        channel.exec_command(command)
        writer = threading.Thread(target=_feed_stdin, args=(channel, stdin or ""), daemon=True)
        writer.start()
        out: list[bytes] = []
        err: list[bytes] = []
        both: list[bytes] = []
        while True:
            got = False
            if channel.recv_ready():
                chunk = channel.recv(65536)
                out.append(chunk)
                both.append(chunk)
                got = True
            if channel.recv_stderr_ready():
                chunk = channel.recv_stderr(65536)
                err.append(chunk)
                both.append(chunk)
                got = True
            if not got:
                if channel.exit_status_ready() and channel.eof_received:
                    if not channel.recv_ready() and not channel.recv_stderr_ready():
                        break
                    continue
                if channel.closed and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                time.sleep(0.002)
        writer.join(timeout=5)
        status = channel.recv_exit_status() if channel.exit_status_ready() else -1
        return RunResult(
            None if status == -1 else status,
            b"".join(out).decode(errors="replace"),
            b"".join(err).decode(errors="replace"),
            b"".join(both).decode(errors="replace"),
        )


def _feed_stdin(channel: paramiko.Channel, data: str) -> None:
    try:
        if data:
            channel.sendall(data.encode())
        channel.shutdown_write()
    except (OSError, paramiko.SSHException):
        # The command exited without reading all of stdin; its exit status tells the story.
        pass


def _setenv(channel: paramiko.Channel, name: str, value: str, want_reply: bool) -> bool:
    """An SSH "env" request. With want_reply, False if sshd refused it (paramiko then closes the channel)."""
    if not want_reply:
        channel.set_environment_variable(name, value)
        return True
    msg = Message()
    msg.add_byte(cMSG_CHANNEL_REQUEST)
    msg.add_int(channel.remote_chanid)
    msg.add_string("env")
    msg.add_boolean(True)
    msg.add_string(name)
    msg.add_string(value)
    channel._event_pending()  # noqa: SLF001 - paramiko has no public env request that waits for the reply
    channel.transport._send_user_message(msg)  # noqa: SLF001
    try:
        channel._wait_for_event()  # noqa: SLF001
    except paramiko.SSHException:
        return False
    return True


def _timeout(conn: dict[str, Any]) -> float | None:
    value = conn.get("perDialTimeout")
    seconds = float(value) if value is not None else 15.0
    return seconds or None

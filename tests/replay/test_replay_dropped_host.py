"""A host that drops off after the dial, as pulumi-command v1.2.1 reports it (no sshd, no lab).

A paramiko server on loopback resets the TCP connection (SO_LINGER 0) at one point of a command's
life; the replay's `remote.Command` must fail the step with the words golang.org/x/crypto v0.48.0
gives `CommandOutputs.run` at that point (see `lab.replay.runners`), never with an internal error.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import paramiko
import pytest

from lab.replay.model import Resource
from lab.replay.providers import Context, StepFailed
from lab.replay.providers.command import Command
from lab.replay.runners import RunnerError, SshRunner

HOST_KEY = paramiko.ECDSAKey.generate()
PASSWORD = "test-only-password"


def reset(sock: socket.socket) -> None:
    """Abort the connection: the peer reads ECONNRESET, as from iptables REJECT tcp-reset."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        return  # already gone
    sock.close()


class Server(paramiko.ServerInterface):
    def __init__(self, sock: socket.socket, reset_at: str) -> None:
        self.sock = sock
        self.reset_at = reset_at

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        if self.reset_at == "after-auth":
            threading.Timer(0.05, reset, (self.sock,)).start()
        return paramiko.AUTH_SUCCESSFUL if password == PASSWORD else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if self.reset_at == "open":
            reset(self.sock)
        if self.reset_at == "prohibited":
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED  # paramiko sends no description
        return paramiko.OPEN_SUCCEEDED

    def check_channel_env_request(self, channel: paramiko.Channel, name: bytes, value: bytes) -> bool:
        if self.reset_at == "env":
            reset(self.sock)
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        if self.reset_at == "exec":
            reset(self.sock)
            return False
        if self.reset_at == "refuse-exec":
            return False
        if self.reset_at == "mid":

            def partly() -> None:
                time.sleep(0.05)  # after the exec reply
                channel.sendall(b"step 1 done\n")
                channel.sendall_stderr(b"step 2 ...\n")
                time.sleep(0.2)
                reset(self.sock)

            threading.Thread(target=partly, daemon=True).start()
        return True


@pytest.fixture
def sshd() -> Iterator[Callable[[str], int]]:
    """A one-connection SSH server that resets the connection at `reset_at`; returns its port."""
    servers: list[tuple[socket.socket, threading.Thread]] = []

    def start(reset_at: str) -> int:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            conn, _ = listener.accept()
            transport = paramiko.Transport(conn)
            transport.add_server_key(HOST_KEY)
            try:
                transport.start_server(server=Server(conn, reset_at))
            except (EOFError, OSError, paramiko.SSHException):
                # the reset this server makes can end its transport under a reply of its own
                # (seen once, as an unhandled thread exception, with the other tests beside it)
                return
            transport.join(10)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((listener, thread))
        return int(listener.getsockname()[1])

    yield start
    for listener, thread in servers:
        thread.join(10)
        listener.close()


class Waited(SshRunner):
    """Asks for the session only once the reset has reached the client."""

    def _dial(self, conn: dict[str, Any]) -> paramiko.Transport:
        transport = super()._dial(conn)
        deadline = time.monotonic() + 5
        while transport.saved_exception is None and transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.01)
        return transport


def run_step(port: int, runner: SshRunner | None = None, **inputs: Any) -> str:
    """The error of a `remote.Command` create against the test server ("" if it succeeded)."""
    connection = {"host": "127.0.0.1", "port": port, "user": "root", "password": PASSWORD, "dialErrorLimit": 0}
    values = {"connection": connection, "create": "do-the-step --now", "stdin": "manifest", **inputs}
    ctx = Context(preview=False, now=lambda: datetime.now(UTC), runner=runner or SshRunner())
    res = Resource(urn="urn:test::mm2-tls-files", type=Command.type, name="mm2-tls-files", parent_urn=None, custom=True)
    try:
        Command().create(ctx, res, values)
    except StepFailed as exc:
        return str(exc)
    return ""


def test_a_reset_while_the_command_runs_is_the_wait_error_with_the_command_and_its_output(sshd: Any) -> None:
    # session.go Wait -> ExitMissingError; commandOutputs.go run wraps it with %q of the command
    err = run_step(sshd("mid"))
    assert err == (
        'wait: remote command exited without exit status or exit signal: running "do-the-step --now":\n'
        "step 1 done\nstep 2 ...\n"
    )


def test_a_reset_before_the_session_is_go_s_read_error_naming_the_host_unwrapped(sshd: Any) -> None:
    # handshake.go records the read error as the write error; mux.openChannel returns it; run
    # returns NewSession's error as it is (no command text)
    port = sshd("after-auth")
    err = run_step(port, runner=Waited())
    assert re.fullmatch(rf"read tcp 127\.0\.0\.1:\d+->127\.0\.0\.1:{port}: read: connection reset by peer", err), err


def test_a_reset_while_the_session_opens_is_the_nil_packet_error(sshd: Any) -> None:
    assert run_step(sshd("open")) == "ssh: unexpected packet in response to channel open: <nil>"


def test_a_channel_the_server_refuses_is_go_s_open_channel_error(sshd: Any) -> None:
    assert run_step(sshd("prohibited")) == "ssh: rejected: administratively prohibited ()"


def test_a_reset_at_the_env_request_fails_setting_the_variable_with_eof(sshd: Any) -> None:
    err = run_step(sshd("env"), environment={"MMTLS_MODE": "switch"})
    assert err == 'could not set environment variable "MMTLS_MODE": EOF'


def test_a_reset_at_the_exec_request_is_eof_with_the_command(sshd: Any) -> None:
    assert run_step(sshd("exec")) == 'EOF: running "do-the-step --now":\n'


def test_an_exec_request_sshd_refuses_is_go_s_command_failed(sshd: Any) -> None:
    assert run_step(sshd("refuse-exec")) == 'ssh: command do-the-step --now failed: running "do-the-step --now":\n'


def test_none_of_it_reaches_the_engine_as_an_internal_error(sshd: Any) -> None:
    """The runner raises only RunnerError (or returns a result) for a connection that ended."""
    for stage in ("mid", "open", "env", "exec"):
        port = sshd(stage)
        try:
            result = SshRunner().run(
                {"host": "127.0.0.1", "port": port, "password": PASSWORD, "dialErrorLimit": 0},
                "true",
                stdin="x",
                environment={"A": "b"},
                previous=None,
            )
        except RunnerError:
            continue
        assert not result.ok, stage

"""Where a remote.Command's text actually runs.

Owns `SshRunner` (real SSH with paramiko, behaving like pulumi-command v1.2.1's remote provider:
one connection and one session per command, the string run by the login shell via `exec`, no
PTY, stdin written then closed, `environment` as env requests whose refusal fails the command,
`PULUMI_COMMAND_STDOUT/STDERR` sent optimistically, host key pinned when `hostKey` is given and
ignored otherwise, every dial error retried like `dialWithRetry`, errors worded like Go's) and
`LocalRunner` (the same contract with `/bin/sh -c` on this machine, for tests of the engine
without hosts). Both count connections and sessions.

Sources copied (pulumi-command v1.2.1, `provider/pkg/provider/remote/`):
- `connection.go` `connectionBase.SSHConfig`: with `hostKey`, `ssh.FixedHostKey` and
  `HostKeyAlgorithms = []string{publicKey.Type()}` -- the pinned key's own type and nothing else.
  For an RSA key that is `ssh-rsa` (SHA-1 signatures), which OpenSSH >= 8.8 does not offer, so an
  RSA pin fails the handshake against a Debian 12 sshd (golang.org/x/crypto v0.48.0 uses the
  list as given: `ssh/handshake.go` `sendKexInit`, `ssh/common.go` `findCommon`).
- `connection.go` `dialWithRetry` + `reachedDialingErrorLimit`: ANY error of `ssh.Dial` (TCP,
  handshake, host key, authentication) is retried; attempt `try` (0-based) fails the dial when
  `try + 1 > dialErrorLimit` (-1: never) with "after <try> failed attempts: <error>"; waits come
  from pulumi `sdk/go/common/util/retry/until.go` (`Until`: 100 ms, x1.5, at most 5 s).
- `commandOutputs.go` `CommandOutputs.run`: a refused `environment` entry fails with
  `could not set environment variable "<name>": ssh: setenv failed`.
- The host dropping off after the dial (a TCP reset), as golang.org/x/crypto v0.48.0 reports it
  to `CommandOutputs.run` (`SshRunner._session_error` has the details): `NewSession`'s error is
  returned unwrapped (`Client.NewSession` -> `mux.openChannel`), every later one is a session
  error that `run` wraps with the command (`Session.Setenv`/`Session.Start` -> `io.EOF`;
  `Session.Wait` -> `ExitMissingError`). Only the NewSession case names the host's address: Go's
  read error does (`read tcp <local>-><host>:22: read: connection reset by peer`).
"""

from __future__ import annotations

import base64
import errno
import io
import os
import posixpath
import socket
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
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
    session_error: str | None = None
    """x/crypto's error when the session broke before an exit status (`EOF` for an exec request
    on a dead connection); None: the command ran and exited, or the wait error applies."""

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and self.session_error is None

    def describe_exit(self) -> str:
        if self.session_error is not None:
            return self.session_error
        if self.exit_status is None:
            return "wait: remote command exited without exit status or exit signal"
        return f"Process exited with status {self.exit_status}"


class CommandRunner(Protocol):
    # read-only: the engine only reads the counts (SshRunner's are properties)
    @property
    def connections(self) -> int: ...

    @property
    def sessions(self) -> int: ...

    def run(
        self,
        connection: dict[str, Any],
        command: str,
        *,
        stdin: str | None,
        environment: dict[str, str] | None,
        previous: tuple[str, str] | None,
    ) -> RunResult: ...

    def copy(self, connection: dict[str, Any], source: str, remote_path: str) -> None:
        """pulumi-command `CopyToRemote` of a local file (raises RunnerError with the provider's text)."""
        ...


def copy_destination(remote_path: str, source: str, is_dir: bool | None) -> str:
    """Where pulumi-command's `sftpCopy` writes a FILE source (copy.go's table: an existing
    directory gets dest/<basename>; a missing or existing file path is the file itself).
    `is_dir`: None when `remote_path` does not exist."""
    return remote_path.rstrip("/") + "/" + os.path.basename(source) if is_dir else remote_path


@dataclass
class _Counters:
    connections: int = 0
    sessions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, connections: int = 0, sessions: int = 0) -> None:
        with self.lock:
            self.connections += connections
            self.sessions += sessions


class _Counted:
    """The counts a CommandRunner reports (read-only for the engine)."""

    _counters: _Counters

    @property
    def connections(self) -> int:
        return self._counters.connections

    @property
    def sessions(self) -> int:
        return self._counters.sessions


class SilentRunner(_Counted):
    """Runs nothing: every command succeeds and prints nothing, every copy succeeds. For the state
    a fresh `up` leaves without hosts (bench/run.py, tools/helper_library.py): a preview's holds
    no value that only the apply makes (an input built from a created resource's output stays
    unknown), so its size flatters any real state."""

    def __init__(self) -> None:
        self._counters = _Counters()

    def run(self, connection: dict[str, Any], command: str, **_: Any) -> RunResult:
        self._counters.count(connections=1, sessions=1)
        return RunResult(0, "", "", "")

    def copy(self, connection: dict[str, Any], source: str, remote_path: str) -> None:
        self._counters.count(connections=1, sessions=1)


class LocalRunner(_Counted):
    """Runs command text with /bin/sh on this machine (tests); records every call."""

    def __init__(self) -> None:
        self._counters = _Counters()
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

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

    def copy(self, connection: dict[str, Any], source: str, remote_path: str) -> None:
        """The file copied on this machine, a relative path against $HOME (where sshd starts the
        SFTP server: OpenSSH session.c `do_child`)."""
        self._counters.count(connections=1, sessions=1)
        with self._lock:
            self.calls.append({"host": connection.get("host"), "copy": source, "remotePath": remote_path})
        dest = os.path.join(os.path.expanduser("~"), remote_path)
        dest = copy_destination(dest, source, os.path.isdir(dest) if os.path.exists(dest) else None)
        try:
            os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
            with open(source, "rb") as src, open(dest, "wb") as out:
                out.write(src.read())
        except OSError as exc:
            raise RunnerError(f"failed to copy file {source} to remote path {dest}: {exc.strerror}") from None


def load_client_key(text: str, password: str | None = None) -> paramiko.PKey:
    """Any PEM/OpenSSH private key (PKCS#1, SEC1, PKCS#8, OpenSSH) as a paramiko key."""
    secret = password.encode() if password else None
    data = text.encode()
    key: PrivateKeyTypes
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


def host_key_algorithms(key_type: str) -> list[str]:
    """What the client offers for a pinned key: `[publicKey.Type()]` (connection.go `SSHConfig`).

    Deliberately no `rsa-sha2-*` for an `ssh-rsa` pin: the provider does not offer them either."""
    return [key_type]


# retry.Until's defaults (sdk/go/common/util/retry/until.go): DefaultDelay, DefaultBackoff, DefaultMaxDelay.
RETRY_DELAY = 0.1
RETRY_BACKOFF = 1.5
RETRY_MAX_DELAY = 5.0


class _HandshakeError(Exception):
    """An `ssh.Dial` error after the TCP connect, already worded like x/crypto/ssh's."""


SHA1_RSA_UNSUPPORTED = (
    "the replay engine cannot verify ssh-rsa (SHA-1) host key signatures (paramiko 5 dropped them); "
    "pulumi-command would accept this server's RSA key: pin its ed25519 or ECDSA host key"
)


class _Transport(paramiko.Transport):
    """paramiko offering exactly the host key algorithms x/crypto would (no `-cert-v01` variants
    added, `ssh-rsa` allowed), and remembering what the server offered (for Go's error text)."""

    offered_host_key_algorithms: tuple[str, ...] | None = None
    peer_host_key_algorithms: list[str] | None = None
    link: str = ""
    """`local->remote` of the TCP connection, for Go's read errors."""
    open_failure_message: str = ""
    """The server's description in its last CHANNEL_OPEN_FAILURE (paramiko keeps only the code)."""

    def _parse_channel_open_failure(self, m: Message) -> None:
        peek = Message(m.asbytes())
        peek.get_int()  # recipient channel
        peek.get_int()  # reason code
        self.open_failure_message = peek.get_text()
        super()._parse_channel_open_failure(m)  # type: ignore[misc]  # paramiko private API (paramiko/transport.py), absent from types-paramiko

    @property
    def preferred_keys(self) -> tuple[str, ...]:
        if self.offered_host_key_algorithms is not None:
            return self.offered_host_key_algorithms
        return tuple(super().preferred_keys)

    def _parse_kex_init(self, m: Message) -> None:
        if not self.server_mode:
            peek = self._really_parse_kex_init(Message(m.asbytes()))  # type: ignore[attr-defined]  # paramiko private API (paramiko/transport.py), absent from types-paramiko
            self.peer_host_key_algorithms = list(peek["server_key_algo_list"])
            if "ssh-rsa" in (self.offered_host_key_algorithms or ()) and "ssh-rsa" in self.peer_host_key_algorithms:
                # Only an sshd older than 8.8 (or one re-enabling ssh-rsa) gets here. The replay is
                # stricter than the provider here, never kinder.
                raise paramiko.SSHException(SHA1_RSA_UNSUPPORTED)
        super()._parse_kex_init(m)  # type: ignore[misc]  # paramiko private API (paramiko/transport.py), absent from types-paramiko


class SshRunner(_Counted):
    """pulumi-command's remote execution, over paramiko."""

    def __init__(self, retry_delay: float = RETRY_DELAY) -> None:
        self._counters = _Counters()
        self.retry_delay = retry_delay
        self.sleep = time.sleep
        """How the runner waits between dials (tests replace it to record the waits)."""

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
            channel = self._open_session(transport, connection)
            self._counters.count(sessions=1)
            try:
                return self._exec(channel, command, stdin, environment, previous)
            finally:
                channel.close()
        finally:
            transport.close()

    def copy(self, connection: dict[str, Any], source: str, remote_path: str) -> None:
        """`copyToRemote` for a file asset (pulumi-command `provider/pkg/provider/remote/
        copyController.go`): one dial, an SFTP client on it, then `sftpCopy`: stat the
        destination, an existing directory gets dest/<basename>, a missing one has its parent
        directories made (`MkdirAll`), and `Create` (O_RDWR|O_CREATE|O_TRUNC, the server's mode)
        writes the file. Errors are worded as copy.go's."""
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise RunnerError(f"open {source}: {exc.strerror.lower() if exc.strerror else exc}") from None
        transport = self._dial(connection)
        try:
            try:
                sftp = paramiko.SFTPClient.from_transport(transport)
            except (OSError, EOFError, paramiko.SSHException):
                # no SFTP subsystem (sshd_config without `Subsystem sftp`): golang.org/x/crypto
                # ssh/session.go `RequestSubsystem` says only this
                raise RunnerError("ssh: subsystem request failed") from None
            if sftp is None:
                raise RunnerError("ssh: subsystem request failed")
            self._counters.count(sessions=1)
            try:
                self._sftp_copy(sftp, source, data, remote_path)
            finally:
                sftp.close()
        finally:
            transport.close()

    @staticmethod
    def _sftp_copy(sftp: paramiko.SFTPClient, source: str, data: bytes, remote_path: str) -> None:
        try:
            st = sftp.stat(remote_path)
            is_dir: bool | None = stat.S_ISDIR(st.st_mode or 0)
        except FileNotFoundError:
            is_dir = None
        except OSError as exc:
            raise RunnerError(f"failed to stat remote path {remote_path}: {exc}") from None
        dest = copy_destination(remote_path, source, is_dir)
        if is_dir is None:
            parent = posixpath.dirname(dest)
            parts = [p for p in parent.split("/") if p]
            cur = "/" if parent.startswith("/") else ""
            for part in parts:
                cur = posixpath.join(cur, part) if cur else part
                try:
                    sftp.mkdir(cur)
                except OSError:
                    try:
                        if not stat.S_ISDIR(sftp.stat(cur).st_mode or 0):
                            raise RunnerError(f"failed to create parent directories for {dest}: not a directory") from None
                    except FileNotFoundError:
                        raise RunnerError(f"failed to create parent directories for {dest}: permission denied") from None
        try:
            with sftp.open(dest, "w") as out:
                out.write(data)
        except OSError as exc:
            raise RunnerError(f"failed to create remote file {dest}: {exc}") from None

    def _open_session(self, transport: _Transport, connection: dict[str, Any]) -> paramiko.Channel:
        """`client.NewSession()`; commandOutputs.go `run` returns its error as it is (no command)."""
        if _gone(transport):
            # The reader saw the connection end before we asked: x/crypto's handshakeTransport
            # then fails every write with the read error (`recordWriteError(t.readError)`).
            raise RunnerError(self._session_error(transport))
        try:
            return transport.open_session(timeout=_timeout(connection))
        except paramiko.ChannelException as exc:
            # ssh/mux.go `openChannel` -> `OpenChannelError.Error`
            reason = _OPEN_FAILURE.get(exc.code, f"unknown reason {exc.code}")
            raise RunnerError(f"ssh: rejected: {reason} ({transport.open_failure_message})") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if not _gone(transport, exc):
                raise
            # Sent, then the connection ended before the confirmation: `mux.loop` closes the
            # channel's msg queue, and `openChannel` reads nil from it.
            raise RunnerError("ssh: unexpected packet in response to channel open: <nil>") from None

    @staticmethod
    def _session_error(transport: _Transport) -> str:
        """The read error x/crypto recorded for a connection that ended (`handshake.go` `readLoop`)."""
        exc = transport.get_exception()
        return _describe(exc, transport.link) if exc is not None else "EOF"

    def _dial(self, conn: dict[str, Any]) -> _Transport:
        """connection.go `Connection.Dial` -> `dialWithRetry(ctx, "Dial", tries, ssh.Dial)`."""
        if conn.get("proxy"):
            raise RunnerError("the replay engine does not support connection.proxy (a jump host)")
        host = str(conn.get("host") or "")
        port_value, limit_value = conn.get("port"), conn.get("dialErrorLimit")
        port = int(port_value if port_value is not None else 22)
        limit = int(limit_value if limit_value is not None else 10)
        delay = self.retry_delay
        try_ = 0
        while True:
            delay = min(delay, RETRY_MAX_DELAY)
            try:
                return self._connect(host, port, conn)
            except _HandshakeError as exc:
                error = str(exc)
            except RunnerError:
                raise  # not a dial error (a key that does not parse): ssh.Dial is never reached
            if limit > -1 and try_ + 1 > limit:
                raise RunnerError(f"after {try_} failed attempts: {error}") from None
            self.sleep(delay)
            delay *= RETRY_BACKOFF
            try_ += 1

    def _connect(self, host: str, port: int, conn: dict[str, Any]) -> _Transport:
        """One `ssh.Dial`: TCP connect, handshake with the pinned host key, authentication."""
        timeout = _timeout(conn)
        pinned = parse_host_key(conn["hostKey"]) if conn.get("hostKey") else None
        client_key = (
            load_client_key(conn["privateKey"], conn.get("privateKeyPassword")) if conn.get("privateKey") else None
        )
        endpoint = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise _HandshakeError(f"dial tcp {endpoint}: {_go_dial_error(exc)}") from None
        self._counters.count(connections=1)
        link = _tcp_link(sock)
        transport = _Transport(sock)
        transport.link = link
        try:
            if pinned:
                transport.offered_host_key_algorithms = tuple(host_key_algorithms(pinned[0]))
            try:
                transport.start_client(timeout=timeout)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                if str(exc) == SHA1_RSA_UNSUPPORTED:
                    raise RunnerError(SHA1_RSA_UNSUPPORTED) from None
                offered = transport.peer_host_key_algorithms
                if pinned and offered is not None and pinned[0] not in offered:
                    raise _HandshakeError(
                        "ssh: handshake failed: ssh: no common algorithm for host key; "
                        f"we offered: [{' '.join(host_key_algorithms(pinned[0]))}], peer offered: [{' '.join(offered)}]"
                    ) from None
                raise _HandshakeError(f"ssh: handshake failed: {_describe(exc, link)}") from None
            server_key = transport.get_remote_server_key()
            if pinned and (server_key.get_name(), server_key.asbytes()) != pinned:
                # ssh/client.go `fixedHostKey.check`; no credentials are offered to that host.
                raise _HandshakeError("ssh: handshake failed: ssh: host key mismatch")
            user = str(conn.get("user") or "root")
            tried = ["none"]
            try:
                if client_key is not None:
                    tried.append("publickey")
                    transport.auth_publickey(user, client_key)
                elif conn.get("password"):
                    tried.append("password")
                    transport.auth_password(user, conn["password"])
                else:
                    raise paramiko.AuthenticationException("no method")
            except (paramiko.SSHException, OSError, EOFError) as exc:
                if isinstance(exc, paramiko.AuthenticationException):
                    # ssh/client_auth.go `clientAuthenticate`
                    raise _HandshakeError(
                        f"ssh: handshake failed: ssh: unable to authenticate, attempted methods [{' '.join(tried)}], "
                        "no supported methods remain"
                    ) from None
                raise _HandshakeError(f"ssh: handshake failed: {_describe(exc, link)}") from None
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
        transport = channel.get_transport()
        for name, value in (environment or {}).items():
            try:
                refused = not _setenv(channel, name, value, want_reply=True)
                reason = "ssh: setenv failed"
            except (OSError, EOFError, paramiko.SSHException) as exc:
                if not _gone(transport, exc):
                    raise
                # session.go `Setenv` -> channel.go `SendRequest` on a channel `mux.loop` closed: io.EOF
                refused, reason = True, "EOF"
            if refused:
                raise RunnerError(f'could not set environment variable "{name}": {reason}')
        if previous:
            # The provider sets these optimistically and only warns when sshd refuses them.
            for name, value in ((PREVIOUS_STDOUT, previous[0]), (PREVIOUS_STDERR, previous[1])):
                if value:
                    try:
                        _setenv(channel, name, value, want_reply=False)
                    except (OSError, EOFError, paramiko.SSHException):
                        pass  # a dead connection fails the exec request below, as in Go
        try:
            channel.exec_command(command)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            # session.go `Start`: `SendRequest("exec")` is io.EOF on a closed channel, and
            # "ssh: command <cmd> failed" when sshd answers no; `run` wraps either with the command.
            error = "EOF" if _gone(transport, exc) else f"ssh: command {command} failed"
            return RunResult(None, "", "", "", session_error=error)
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


# ssh/common.go `RejectionReason.String`
_OPEN_FAILURE = {
    1: "administratively prohibited",
    2: "connect failed",
    3: "unknown channel type",
    4: "resource shortage",
}


def _feed_stdin(channel: paramiko.Channel, data: str) -> None:
    try:
        if data:
            channel.sendall(data.encode())
        channel.shutdown_write()
    except (OSError, paramiko.SSHException):
        # The command exited without reading all of stdin; its exit status tells the story.
        pass


class _TransportInternals(Protocol):
    def _send_user_message(self, data: Message) -> None: ...


class _ChannelInternals(Protocol):
    """The private paramiko.Channel API _setenv relies on (paramiko/channel.py); types-paramiko leaves it out."""

    transport: _TransportInternals

    def _event_pending(self) -> None: ...

    def _wait_for_event(self) -> None: ...


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
    internals = cast(_ChannelInternals, channel)
    internals._event_pending()  # noqa: SLF001 - paramiko has no public env request that waits for the reply
    internals.transport._send_user_message(msg)  # noqa: SLF001
    try:
        internals._wait_for_event()  # noqa: SLF001
    except paramiko.SSHException:
        if _gone(channel.get_transport()):
            raise
        return False
    return True


def _gone(transport: paramiko.Transport, exc: BaseException | None = None) -> bool:
    """The connection ended (paramiko re-raises its reader's socket error, or records it first)."""
    return isinstance(exc, (OSError, EOFError)) or transport.saved_exception is not None or not transport.is_active()


def _go_dial_error(exc: OSError) -> str:
    """A failed TCP connect as Go's net package words it (`connect: connection refused`)."""
    if isinstance(exc, TimeoutError) or exc.errno in (errno.ETIMEDOUT, None) and "timed out" in str(exc):
        return "i/o timeout"
    if isinstance(exc, socket.gaierror):
        return f"lookup: {exc.strerror or exc}"
    if exc.errno is not None:
        return f"connect: {os.strerror(exc.errno).lower()}"
    return str(exc)


def _tcp_link(sock: socket.socket) -> str:
    """`local->remote` as Go's net.OpError prints a connection (`127.0.0.1:50522->10.0.0.1:22`)."""
    try:
        local, remote = sock.getsockname(), sock.getpeername()
    except OSError:
        return ""
    return f"{local[0]}:{local[1]}->{remote[0]}:{remote[1]}"


def _describe(exc: BaseException, link: str) -> str:
    """A handshake error as x/crypto/ssh reports the same event: a peer hanging up is `EOF`, a
    reset is the read error; paramiko's own wording otherwise (the cause is the same)."""
    text = str(exc)
    if isinstance(exc, ConnectionResetError) or "Connection reset by peer" in text:
        return f"read tcp {link}: read: connection reset by peer"
    if isinstance(exc, EOFError) or text in ("", "Error reading SSH protocol banner") or "EOF" in text:
        return "EOF"
    return text


def _timeout(conn: dict[str, Any]) -> float | None:
    value = conn.get("perDialTimeout")
    seconds = float(value) if value is not None else 15.0
    return seconds or None

"""The replay engine's SSH execution against a throwaway sshd on 127.0.0.1.

Self-contained: a private sshd (own config, host key and authorized_keys in a temp dir, a free
port on loopback) runs for this module only and is stopped by its own PID. The system sshd and
its config are never touched. Skips when no sshd binary is available (install openssh-server,
or point REPLAY_SSHD at one).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from lab.replay import evaluate
from lab.replay.runners import RunnerError, SshRunner
from lab.replay.testing import write_project

pytestmark = pytest.mark.lab


def _keypair(directory: Path, name: str) -> tuple[Path, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    path = directory / name
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return path, public


def _rsa_host_key(directory: Path) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "host_rsa_key"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return path, public


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    binary = os.environ.get("REPLAY_SSHD") or shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(binary):
        pytest.skip("no sshd binary (install openssh-server or set REPLAY_SSHD)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("sshd")
        except KeyError:
            pytest.skip("sshd running as root needs its privilege separation user 'sshd'")
        # sshd's privilege separation directory; an empty directory on tmpfs, created if absent.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    tmp = tmp_path_factory.mktemp("sshd")
    host_key, host_public = _keypair(tmp, "host_key")
    rsa_key, rsa_public = _rsa_host_key(tmp)
    client_key, client_public = _keypair(tmp, "client_key")
    (tmp / "authorized_keys").write_text(client_public + "\n")
    port = _free_port()
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nHostKey {rsa_key}\n"
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}\nPidFile {tmp / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "PermitRootLogin prohibit-password\nAcceptEnv LANG LC_*\n"
    )
    log = (tmp / "sshd.log").open("w")
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if proc.poll() is not None:
                pytest.skip(f"sshd did not start: {(tmp / 'sshd.log').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield {
            "host": "127.0.0.1",
            "port": float(port),
            "user": pwd.getpwuid(os.geteuid()).pw_name,
            "privateKey": client_key.read_text(),
            "hostKey": host_public + " host@test",
            "dialErrorLimit": 3.0,
            "perDialTimeout": 5.0,
            "tmp": str(tmp),
            "rsaHostKey": rsa_public,
            "binary": binary,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


EXTRA = ("tmp", "rsaHostKey", "binary")


def run(
    conn: dict[str, Any],
    command: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    runner: SshRunner | None = None,
):
    connection = {k: v for k, v in conn.items() if k not in EXTRA}
    runner = runner or SshRunner(retry_delay=0.05)
    return runner.run(connection, command, stdin=stdin, environment=env, previous=None)


def test_stdin_is_sent_and_closed_without_a_pty(sshd: dict[str, Any]) -> None:
    result = run(sshd, "cat; if [ -t 0 ]; then echo pty; else echo no-pty; fi; echo to-err >&2; exit 4", "a\nb\n")
    assert result.exit_status == 4
    assert result.stdout == "a\nb\nno-pty\n"
    assert result.stderr == "to-err\n"


def test_the_login_shell_runs_the_string(sshd: dict[str, Any]) -> None:
    shell = pwd.getpwuid(os.geteuid()).pw_shell
    result = run(sshd, "echo $0; echo ok | tr a-z A-Z")
    assert result.ok and result.stdout.splitlines() == [os.path.basename(shell), "OK"]


def test_host_key_is_pinned(sshd: dict[str, Any]) -> None:
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    wrong = other.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    runner = SshRunner(retry_delay=0.01)
    with pytest.raises(RunnerError) as err:
        run({**sshd, "hostKey": wrong}, "true", runner=runner)
    # fixedHostKey.check's error, retried by dialWithRetry like any dial error (3 + 1 dials)
    assert str(err.value) == "after 3 failed attempts: ssh: handshake failed: ssh: host key mismatch"
    assert runner.connections == 4 and runner.sessions == 0
    unpinned = {k: v for k, v in sshd.items() if k != "hostKey"}
    assert run(unpinned, "true").ok  # like the provider: no hostKey, any key accepted


def test_an_ed25519_pin_works_and_an_rsa_pin_fails_the_handshake_against_openssh_9(sshd: dict[str, Any]) -> None:
    """The provider offers only the pinned key's type; for RSA that is `ssh-rsa` (SHA-1), which
    OpenSSH >= 8.8 (here 9.2, as on Debian 12) no longer offers, although it holds that very key."""
    assert sshd["hostKey"].startswith("ssh-ed25519 ") and run(sshd, "true").ok
    runner = SshRunner(retry_delay=0.01)
    with pytest.raises(RunnerError) as err:
        run({**sshd, "hostKey": sshd["rsaHostKey"], "dialErrorLimit": 1.0}, "true", runner=runner)
    message = str(err.value)
    print(message)
    assert message.startswith(
        "after 1 failed attempts: ssh: handshake failed: ssh: no common algorithm for host key; "
        "we offered: [ssh-rsa], peer offered: ["
    ), message
    offered = message.split("peer offered: [", 1)[1].rstrip("]").split()
    assert "rsa-sha2-512" in offered and "ssh-ed25519" in offered and "ssh-rsa" not in offered, offered
    assert runner.connections == 2 and runner.sessions == 0


def _second_sshd(sshd: dict[str, Any], name: str, extra: str = "") -> tuple[int, Path]:
    """A config for another sshd like the module's, on another port (started by the caller)."""
    tmp = Path(sshd["tmp"])
    port = _free_port()
    config = tmp / f"{name}_sshd_config"
    config.write_text(
        (tmp / "sshd_config")
        .read_text()
        .replace(f"Port {int(sshd['port'])}\n", f"Port {port}\n")
        .replace(f"PidFile {tmp / 'sshd.pid'}", f"PidFile {tmp / (name + '.pid')}")
        + extra
    )
    return port, config


def test_an_sshd_still_offering_ssh_rsa_is_refused_not_trusted(sshd: dict[str, Any]) -> None:
    """The one place the replay is stricter than the provider: x/crypto would verify an ssh-rsa
    (SHA-1) signature from an sshd that still offers it; paramiko 5 cannot, so the replay refuses
    with a message saying so, and never connects unverified."""
    port, config = _second_sshd(sshd, "sha1", "HostKeyAlgorithms +ssh-rsa\n")
    proc = subprocess.Popen([sshd["binary"], "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        runner = SshRunner(retry_delay=0.01)
        with pytest.raises(RunnerError, match=r"cannot verify ssh-rsa \(SHA-1\) host key signatures") as err:
            run({**sshd, "port": float(port), "hostKey": sshd["rsaHostKey"]}, "true", runner=runner)
        assert "pin its ed25519 or ECDSA host key" in str(err.value)
        assert runner.sessions == 0
        assert run({**sshd, "port": float(port)}, "echo ed25519").stdout == "ed25519\n"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_refused_key_is_retried_and_worded_like_x_crypto(sshd: dict[str, Any]) -> None:
    stranger = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    runner = SshRunner(retry_delay=0.01)
    with pytest.raises(RunnerError) as err:
        run({**sshd, "privateKey": stranger.decode(), "dialErrorLimit": 1.0}, "true", runner=runner)
    assert str(err.value) == (
        "after 1 failed attempts: ssh: handshake failed: ssh: unable to authenticate, "
        "attempted methods [none publickey], no supported methods remain"
    )
    assert runner.connections == 2


def test_a_host_that_comes_up_while_dialing_is_reached(sshd: dict[str, Any]) -> None:
    """dialWithRetry keeps dialing (100 ms, x1.5, ...): an sshd that starts 1 s late is reached."""
    port, config = _second_sshd(sshd, "late")
    waits: list[float] = []
    started: list[subprocess.Popen[bytes]] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if sum(waits) >= 1.0 and not started:
            started.append(subprocess.Popen([sshd["binary"], "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL))
        time.sleep(seconds)

    runner = SshRunner()
    runner.sleep = sleep
    try:
        result = run({**sshd, "port": float(port), "dialErrorLimit": 10.0}, "echo up", runner=runner)
    finally:
        for proc in started:
            proc.terminate()
            proc.wait(timeout=10)
    assert result.stdout == "up\n" and started
    assert waits[:4] == pytest.approx([0.1, 0.15, 0.225, 0.3375])
    assert runner.connections == 1  # refused TCP dials are not connections


def test_environment_requests_fail_when_sshd_refuses_them(sshd: dict[str, Any]) -> None:
    assert run(sshd, 'echo "$LANG"', env={"LANG": "C.UTF-8"}).stdout == "C.UTF-8\n"
    with pytest.raises(RunnerError, match='could not set environment variable "MM_TLS"'):
        run(sshd, "true", env={"MM_TLS": "on"})


def test_unreachable_host_fails_after_the_dial_limit(sshd: dict[str, Any]) -> None:
    port = _free_port()
    with pytest.raises(RunnerError) as err:
        run({**sshd, "port": float(port), "dialErrorLimit": 1.0}, "true")
    assert str(err.value) == f"after 1 failed attempts: dial tcp 127.0.0.1:{port}: connect: connection refused"


PROGRAM = """
import pulumi
from pulumi_command import remote
cfg = pulumi.Config()
c = cfg.require_object("conn")
conn = remote.ConnectionArgs(host=c["host"], port=c["port"], user=c["user"], private_key=c["privateKey"],
                             host_key=c["hostKey"])
path = cfg.require("path")
f = remote.Command("file", connection=conn, stdin=pulumi.Output.secret(cfg.require("content")),
    create=f"umask 077; cat > {path}.tmp && mv {path}.tmp {path}", delete=f"rm -f {path}",
    opts=pulumi.ResourceOptions(additional_secret_outputs=["stdout", "stderr"]))
pulumi.export("stdout", remote.Command("probe", connection=conn, create="echo probed",
    opts=pulumi.ResourceOptions(depends_on=[f])).stdout)
"""


def test_program_over_ssh_converges_and_destroys(sshd: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "managed.conf"
    conn = {k: v for k, v in sshd.items() if k not in EXTRA}
    project = write_project(tmp_path / "proj", PROGRAM)
    config = {"conn": conn, "path": str(target), "content": "secret=1\n"}

    first = evaluate(project, "dev", config=config, preview=False, runner=SshRunner())
    assert first.ok, first.failed_steps
    assert target.read_text() == "secret=1\n"
    assert (first.ssh_sessions, first.ssh_connections) == (2, 2)
    assert first.outputs["stdout"] == "probed"

    second = evaluate(project, "dev", config=config, state=first.state, preview=False, runner=SshRunner())
    assert {s.op for s in second.steps} == {"same"} and second.ssh_sessions == 0

    changed = evaluate(
        project, "dev", config={**config, "content": "secret=2\n"}, state=first.state, preview=False, runner=SshRunner()
    )
    assert [s.op for s in changed.steps if s.op != "same"] == ["update"]
    assert target.read_text() == "secret=2\n"

    failing = evaluate(
        project,
        "dev",
        config={**config, "path": str(tmp_path / "missing-dir" / "x"), "content": "secret=3\n"},
        state=changed.state,
        preview=False,
        runner=SshRunner(),
    )
    error = failing.failed_steps[0].error
    assert "secret=3" not in error and "Process exited with status" in error

    from lab.replay.engine import Engine

    engine = Engine(old=changed.state, preview=False, runner=SshRunner())
    engine.destroy()
    assert not target.exists()

"""SshRunner's dialing as pulumi-command v1.2.1 dials (`connection.go`), without an sshd.

A closed loopback port and a loopback listener that hangs up at once stand in for a host that
is down and for one whose sshd drops the connection; the waits between dials are recorded
instead of slept.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from lab.replay.engine import Engine, default_parallel
from lab.replay.runners import RunnerError, SshRunner, host_key_algorithms
from lab.replay.state import State


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recorder:
    def __init__(self, stop_after: int | None = None) -> None:
        self.waits: list[float] = []
        self.stop_after = stop_after

    def __call__(self, seconds: float) -> None:
        self.waits.append(round(seconds, 6))
        if self.stop_after is not None and len(self.waits) >= self.stop_after:
            raise KeyboardInterrupt("enough dials")


def runner(recorder: Recorder) -> SshRunner:
    r = SshRunner()
    r.sleep = recorder
    return r


def dial(r: SshRunner, port: int, **conn: Any) -> None:
    r.run(
        {"host": "127.0.0.1", "port": float(port), "user": "root", **conn},
        "true",
        stdin=None,
        environment=None,
        previous=None,
    )


def test_a_refused_dial_is_retried_dial_error_limit_times_with_retry_until_waits() -> None:
    port = closed_port()
    waits = Recorder()
    with pytest.raises(RunnerError) as err:
        dial(runner(waits), port, dialErrorLimit=3)
    # dialWithRetry: attempts try=0..3; the 4th (try+1 > 3) fails "after 3 failed attempts"
    assert str(err.value) == f"after 3 failed attempts: dial tcp 127.0.0.1:{port}: connect: connection refused"
    assert waits.waits == [0.1, 0.15, 0.225]  # retry.Until: 100 ms, x1.5


def test_the_default_limit_is_ten_and_waits_stop_growing_at_five_seconds() -> None:
    waits = Recorder()
    with pytest.raises(RunnerError, match="^after 10 failed attempts: "):
        dial(runner(waits), closed_port())
    assert len(waits.waits) == 10
    many = Recorder()
    with pytest.raises(RunnerError, match="^after 14 failed attempts: "):
        dial(runner(many), closed_port(), dialErrorLimit=14)
    assert many.waits[-4:] == [5.0, 5.0, 5.0, 5.0] and max(many.waits) == 5.0
    assert many.waits[9] == pytest.approx(0.1 * 1.5**9, rel=1e-6)


def test_limit_zero_dials_once_and_minus_one_never_gives_up() -> None:
    once = Recorder()
    with pytest.raises(RunnerError, match="^after 0 failed attempts: dial tcp"):
        dial(runner(once), closed_port(), dialErrorLimit=0)
    assert once.waits == []
    forever = Recorder(stop_after=25)
    with pytest.raises(KeyboardInterrupt):
        dial(runner(forever), closed_port(), dialErrorLimit=-1)
    assert len(forever.waits) == 25


@pytest.fixture
def hangs_up() -> Iterator[tuple[int, list[int]]]:
    """A listener that accepts and closes at once, like an sshd over MaxStartups; counts accepts."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    accepted = [0]
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            accepted[0] += 1
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(srv.getsockname()[1]), accepted
    stop.set()
    thread.join()
    srv.close()


def test_a_handshake_failure_is_retried_like_any_dial_error(hangs_up: tuple[int, list[int]]) -> None:
    """dialWithRetry retries whatever ssh.Dial returns, handshake errors included."""
    port, accepted = hangs_up
    waits = Recorder()
    r = runner(waits)
    with pytest.raises(RunnerError) as err:
        dial(r, port, dialErrorLimit=2, perDialTimeout=5.0)
    # Go's words for a peer hanging up during the handshake: EOF, or a reset if our bytes were unread
    reset = rf"read tcp 127\.0\.0\.1:\d+->127\.0\.0\.1:{port}: read: connection reset by peer"
    assert re.fullmatch(rf"after 2 failed attempts: ssh: handshake failed: (EOF|{reset})", str(err.value)), err.value
    assert accepted[0] == 3 and r.connections == 3 and len(waits.waits) == 2


def test_a_key_that_does_not_parse_is_not_a_dial_error() -> None:
    """SSHConfig() fails before ssh.Dial: no dial, no retry."""
    waits = Recorder()
    with pytest.raises(RunnerError, match="cannot parse private key"):
        dial(runner(waits), closed_port(), privateKey="not a key")
    assert waits.waits == []


def test_a_pinned_key_offers_only_its_own_type() -> None:
    """connection.go SSHConfig: HostKeyAlgorithms = []string{publicKey.Type()}; no rsa-sha2-* for RSA."""
    assert host_key_algorithms("ssh-rsa") == ["ssh-rsa"]
    assert host_key_algorithms("ssh-ed25519") == ["ssh-ed25519"]
    assert host_key_algorithms("ecdsa-sha2-nistp256") == ["ecdsa-sha2-nistp256"]


def test_default_parallel_is_the_clis(monkeypatch: pytest.MonkeyPatch) -> None:
    """up.go defaultParallel: PULUMI_PARALLEL if > 0, else 4 x GOMAXPROCS (the CPUs we may use)."""
    monkeypatch.delenv("PULUMI_PARALLEL", raising=False)
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    cpus = len(os.sched_getaffinity(0))
    assert default_parallel() == 4 * cpus
    assert Engine(old=State(), preview=True, runner=None).parallel == 4 * cpus
    monkeypatch.setenv("GOMAXPROCS", "3")
    assert default_parallel() == 12
    monkeypatch.setenv("PULUMI_PARALLEL", "5")
    assert default_parallel() == 5
    monkeypatch.setenv("PULUMI_PARALLEL", "0")
    assert default_parallel() == 12

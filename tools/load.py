"""A bounded load generator: GET one URL over HTTPS in a loop and count what failed.

Used while a rollout runs to measure whether (and for how long) the site stopped answering. The
default URL is Mattermost's ping with ``get_server_status=true``, which writes and deletes a row
through the node's database pool (server/channels/api4/system.go getSystemPing): a request
succeeds only if the node reaches its database, so a rollout that breaks a node's database
logins fails requests, as it fails real users' requests. The bare ping answers from memory.
Bounded in requests and seconds, it stops by itself; it only talks to the address it is given
(the lab proxy), pinned with `resolve_to` so no DNS is involved.

`under_load(step, load, label=...)` runs one lifecycle step (e.g. a replay `up`) under a load and
returns its figures, `(requests, failed, seconds)`: the one helper of tests/lab/test_zero_failures.py,
tests/lab/test_ca_rotation.py and bench/lifecycle.py (`figures_table` prints them).
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

DB_PING = "/api/v4/system/ping?get_server_status=true"
"""The route that needs the database on every request."""


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    first_failure: float | None = None
    last_failure: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    failure_times: list[float] = field(default_factory=list)
    """Seconds from the load's start to each failed request."""
    started: float = 0.0
    """time.monotonic() when the load started (to place failures on another timeline)."""

    @property
    def failure_window(self) -> float:
        """Seconds from the first to the last failed request (0 if none or one)."""
        if self.first_failure is None or self.last_failure is None:
            return 0.0
        return self.last_failure - self.first_failure

    def __str__(self) -> str:
        return f"{self.sent} requests, {self.failed} failed, failure window {self.failure_window:.1f}s"


class Load:
    """Runs in a thread between start() and stop()."""

    def __init__(
        self,
        host: str,
        resolve_to: str,
        ca_pem: str,
        path: str = DB_PING,
        *,
        port: int = 443,
        interval: float = 0.05,
        max_requests: int = 20000,
        max_seconds: float = 600,
        timeout: float = 5,
    ):
        self.host, self.resolve_to, self.path, self.port = host, resolve_to, path, port
        self.ctx = ssl.create_default_context(cadata=ca_pem)
        self.interval, self.max_requests, self.max_seconds, self.timeout = interval, max_requests, max_seconds, timeout
        self.result = LoadResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def trust(self, ca_pem: str) -> None:
        """From the next request on, verify with `ca_pem` (a client that re-read `caCertPem`)."""
        self.ctx = ssl.create_default_context(cadata=ca_pem)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _one(self) -> str | None:
        conn = http.client.HTTPSConnection(self.resolve_to, self.port, timeout=self.timeout, context=self.ctx)
        # TLS server name and Host header are the public name; the TCP target is the pinned address
        conn.sock = None
        try:
            conn.connect = _connect_with_sni(conn, self.host)  # type: ignore[method-assign]
            conn.request("GET", self.path, headers={"Host": self.host})
            resp = conn.getresponse()
            resp.read()
            return None if resp.status == 200 else f"HTTP {resp.status}"
        except (OSError, http.client.HTTPException) as e:
            return type(e).__name__
        finally:
            conn.close()

    def _run(self) -> None:
        start = self.result.started = time.monotonic()
        while not self._stop.is_set():
            if self.result.sent >= self.max_requests or time.monotonic() - start > self.max_seconds:
                break
            t0 = time.monotonic()
            err = self._one()
            self.result.sent += 1
            self.result.latencies.append(time.monotonic() - t0)
            if err:
                now = time.monotonic() - start
                self.result.failed += 1
                self.result.errors[err] = self.result.errors.get(err, 0) + 1
                if self.result.first_failure is None:
                    self.result.first_failure = now
                self.result.last_failure = now
                self.result.failure_times.append(now)
            self._stop.wait(self.interval)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        self._thread.join(self.timeout + 5)
        return self.result

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class StepUnderLoad(Generic[T]):
    """What the load saw during one step: unpacks as `(requests, failed, seconds)`."""

    label: str
    """The step's name in printouts and the README's figures (e.g. "first up")."""
    requests: int
    """Requests sent from just before the step started until just after it ended."""
    failed: int
    seconds: float
    """The step's own duration."""
    value: T
    """What the step returned (e.g. the replay's Evaluation)."""
    errors: dict[str, int] = field(default_factory=dict)
    failure_times: list[float] = field(default_factory=list)
    """Seconds from the step's start to each of its failed requests (negative: before it)."""

    def __iter__(self) -> Iterator[float]:
        return iter((self.requests, self.failed, self.seconds))

    def __str__(self) -> str:
        errors = f", errors {self.errors}" if self.errors else ""
        return f"{self.label}: {self.requests} requests, {self.failed} failed, {self.seconds:.1f}s{errors}"


def under_load(
    step: Callable[[], T],
    load: Load,
    *,
    label: str = "",
    before: int = 5,
    after: int = 5,
    keep_running: bool = False,
    wait_seconds: float = 30,
) -> StepUnderLoad[T]:
    """Run `step` while `load` sends requests, and count what the load saw during it.

    The load is started if it is not running yet; `before` requests are seen first (the load
    really runs when the step starts) and `after` more once the step ended (the site answers on
    the far side too); those count with the step. With `keep_running` the load goes on (one
    load across several steps: each call counts only its own requests); otherwise it is
    stopped. If the step raises, the load is stopped and the exception propagates.
    """
    if not load.running:
        load.start()
    r = load.result

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + wait_seconds
        while r.sent < n and time.monotonic() < deadline and load.running:
            time.sleep(0.01)

    sent0, failed0, errors0 = r.sent, r.failed, dict(r.errors)
    wait_for(sent0 + before)
    t0 = time.monotonic()
    try:
        value = step()
        seconds = time.monotonic() - t0
        wait_for(r.sent + after)
    except BaseException:
        load.stop()
        raise
    if not keep_running:
        load.stop()
    errors = {k: v - errors0.get(k, 0) for k, v in r.errors.items() if v - errors0.get(k, 0)}
    offset = r.started - t0
    times = [round(t + offset, 2) for t in r.failure_times[failed0 : r.failed]]
    return StepUnderLoad(label, r.sent - sent0, r.failed - failed0, round(seconds, 1), value, errors, times)


def figures_table(figures: Iterable[StepUnderLoad[Any]], title: str = "step") -> str:
    """The README's figures table (markdown): one row per step, requests, failed, seconds."""
    rows = [f"| {title} | requests | failed | seconds |", "|---|---|---|---|"]
    rows += [f"| {f.label} | {f.requests:,} | **{f.failed}** | {f.seconds:.1f} |" for f in figures]
    return "\n".join(rows)


def _connect_with_sni(conn: http.client.HTTPSConnection, server_name: str):
    import socket

    def connect() -> None:
        sock = socket.create_connection((conn.host, conn.port), conn.timeout)
        conn.sock = conn._context.wrap_socket(sock, server_hostname=server_name)  # type: ignore[attr-defined]

    return connect

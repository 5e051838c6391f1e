"""What the lab tests share: the hosts' snapshots and their diff, the stack's values, the
browser-like load through NGINX, and the rollout context (a fresh before state, `up` under load,
destroy and compare). The lab-session fixture (`lab`, with its lock) is in tests/lab/conftest.py.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.host_helper_render import HELPER_DIR, LOCK_FILE
from lab import replay
from lab.hosts import Lab
from tests.helpers.certs import make_ca, make_leaf, pem
from tools.load import DB_PING, Load, LoadResult

ROOT = Path(__file__).resolve().parents[2]
PROXY_IP = "10.251.0.10"
SERVER_NAME = "mattermost.lab.internal"
PING = DB_PING
NODES3 = [{"name": "mm1"}, {"name": "mm2"}, {"name": "mm3"}]
HOSTS3 = ("mm1", "mm2", "mm3", "proxy", "postgres", "mariadb")
HOSTS1 = ("mm1", "proxy", "postgres", "mariadb")

HELPER_FILES = (HELPER_DIR.lstrip("/") + "/", LOCK_FILE.lstrip("/"))
"""The host helper's files as snapshot paths (components/host_helper.py): its directory (a
prefix) and its lock. Installed before a host's first change and left in place by a failed run
(the state still holds the helper); destroy removes them."""


def is_helper_file(path_or_change: str) -> bool:
    """Whether a snapshot path, or a `diff` line, is about the host helper's own files."""
    return path_or_change.startswith(HELPER_FILES)


def without_helper(snap: dict[str, str]) -> dict[str, str]:
    """A snapshot minus the host helper's own files."""
    return {path: v for path, v in snap.items() if not is_helper_file(path)}


# everything the program may touch on a host (and a good deal it must not)
SNAPSHOT = r"""
cd /
find etc opt usr/local/share/ca-certificates var/lib/mattermost-transport-encryption \
  {helper_dir} {lock_file} -xdev \
  \( -type f -o -type l \) 2>/dev/null \
  | grep -v -e '^opt/mattermost/logs/' -e '^opt/mattermost/data/' -e '^etc/ld.so.cache$' \
  | LC_ALL=C sort | while IFS= read -r f; do
  if [ -L "$f" ]; then echo "L $(readlink "$f") $f"
  else echo "$(sha256sum < "$f" | cut -c1-64) $(stat -c %a.%U.%G "$f") $f"; fi
done
""".replace("{helper_dir}", HELPER_FILES[0].rstrip("/")).replace("{lock_file}", HELPER_FILES[1])


class OrderedCtx:
    """What a module's ordered lab tests hand each other: the lab, their stack's state file, the
    hosts' "before" snapshots, outputs and timings, and the config overrides in force for the
    rest of the module (like `pulumi config set`)."""

    def __init__(self, lab: Lab, state: Path, config: dict[str, Any] | None = None) -> None:
        self.lab = lab
        self.state = state
        self.before: dict[str, dict[str, str]] = {}
        self.outputs: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.config: dict[str, Any] = dict(config or {})


def snapshot(lab: Lab, host: str, script: str = SNAPSHOT) -> dict[str, str]:
    """Path -> "hash mode.owner.group" (or "L target") of everything `script` lists on `host`."""
    r = lab.ssh(host, script, timeout=120)
    out = {}
    for line in r.stdout.splitlines():
        head, _, path = line.rpartition(" ")
        out[path] = head
    assert len(out) > 100, f"snapshot of {host} is implausibly small"
    return out


def diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    changes = []
    for path in sorted(set(before) | set(after)):
        if before.get(path) != after.get(path):
            changes.append(f"{path}: {before.get(path, 'absent')} -> {after.get(path, 'absent')}")
    return changes


def runs_on_host(ev: replay.Evaluation) -> set[str]:
    """Names of the remote commands with a create text: a command without one (the cluster's key
    list and barriers, a node host's `<helper>-copy`) runs nothing on `up` (pulumi-command
    provider/pkg/provider/remote/commandController.go `Create`)."""
    return {r.name for r in ev.resources if r.type == "command:remote:Command" and r.inputs.get("create")}


def changed(ev: replay.Evaluation) -> dict[str, str]:
    return {s.name: s.op for s in ev.steps if s.op != "same"}


def ping_through_proxy(ca_pem: str, n: int = 5) -> int:
    """How many of n HTTPS pings through NGINX succeeded."""
    load = Load(SERVER_NAME, PROXY_IP, ca_pem, interval=0.05, max_requests=n)
    load.start()
    deadline = time.monotonic() + 30
    while load.result.sent < n and time.monotonic() < deadline:
        time.sleep(0.05)
    r = load.stop()
    return r.sent - r.failed


# what the printed timeline shows: the transition, each node's switch, the final site
MILESTONES = ("proxy-transition", "mm1-tls-files", "mm2-tls-files", "mm3-tls-files", "proxy-site")


class BrowserLoad(Load):
    """tools.load.Load, but each request starts where a browser does: plain HTTP on port 80,
    following a redirect to the same URL over verified HTTPS. A 200 on either is a success."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.plain_ok = 0
        self.https_ok = 0

    def _one(self) -> str | None:
        conn = http.client.HTTPConnection(self.resolve_to, 80, timeout=self.timeout)
        try:
            conn.request("GET", self.path, headers={"Host": self.host})
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as e:
            return f"http: {type(e).__name__}"
        finally:
            conn.close()
        if resp.status == 200:
            self.plain_ok += 1
            return None
        if resp.status not in (301, 302, 307, 308):
            return f"http: HTTP {resp.status}"
        if resp.getheader("Location") != f"https://{self.host}{self.path}":
            return f"http: redirect to {resp.getheader('Location')}"
        err = super()._one()
        if err is None:
            self.https_ok += 1
        return err and f"https: {err}"


@dataclass
class Rollout:
    """One `up` under load: what the load saw and when the milestones completed."""

    ev: replay.Evaluation
    load: LoadResult
    plain_ok: int
    https_ok: int
    seconds: float
    offset: float
    """Seconds the load ran before the up started (its failure times count from its own start)."""
    milestones: dict[str, float] = field(default_factory=dict)
    """Seconds from the up's start to each milestone step's completion."""

    def report(self, label: str) -> str:
        r = self.load
        when = ", ".join(f"{k} {v:.1f}s" for k, v in self.milestones.items())
        window = (
            f"failures from {r.first_failure - self.offset:.1f}s to {r.last_failure - self.offset:.1f}s "
            f"(window {r.failure_window:.1f}s), errors {r.errors}"
            if r.failed and r.first_failure is not None and r.last_failure is not None
            else "no failure"
        )
        return (
            f"{label}: {r.sent} requests ({self.plain_ok} plain before the switch, {self.https_ok} over HTTPS), "
            f"{r.failed} failed; rollout {self.seconds:.1f}s; {window}; milestones: {when}"
        )


def public_cert() -> tuple[str, str, str]:
    """(CA PEM, certificate PEM, key PEM) for NGINX's browser side, from a CA of the test."""
    ca = make_ca("rollout test CA", days=2)
    cert, key = make_leaf(ca, [SERVER_NAME, PROXY_IP])
    return pem(ca[1]), cert, key


def stack_value(key: str) -> Any:
    data = yaml.safe_load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())["config"]
    return data[f"mattermost-transport-encryption:{key}"]


class Ctx:
    """The rollout tests' context: a browser-side certificate of their own, the seeded before
    state, `up` under a browser-like load, destroy and compare."""

    def __init__(self, lab: Lab, tmp: Path):
        self.lab = lab
        self.tmp = tmp
        self.browser_ca, cert, key = public_cert()
        # config overrides replace whole top-level keys: the stack's proxy values plus our cert
        self.config: dict[str, Any] = {
            "proxy": {**stack_value("proxy"), "tls": {"source": "provided", "cert": cert}},
            "proxyTlsKey": replay.Secret(key),
        }
        self.before: dict[str, dict[str, str]] = {}

    def fresh(self, nodes: int) -> None:
        """The seeded before state with `nodes` nodes (the proxy's plain site lists exactly them)."""
        self.lab.down()
        self.lab.up(nodes=nodes, extra=[])
        hosts = HOSTS3 if nodes == 3 else HOSTS1
        self.before = {h: snapshot(self.lab, h) for h in hosts}

    def rollout(self, state: Path, **config: Any) -> Rollout:
        load = BrowserLoad(SERVER_NAME, PROXY_IP, self.browser_ca, PING, interval=0.02, max_seconds=900)
        t0 = time.monotonic()
        milestones: dict[str, float] = {}

        def on_step(step: replay.Step) -> None:
            if step.name in MILESTONES and step.result == "ok":
                milestones[step.name] = time.monotonic() - t0

        load.start()
        # a few requests through the plain site first: the load really started before the up
        while load.result.sent < 5 and time.monotonic() - t0 < 30:
            time.sleep(0.02)
        load_started, t0 = t0, time.monotonic()  # on_step measures from here, the up's start
        try:
            ev = replay.up(ROOT, "lab", state_path=state, config={**self.config, **config}, on_step=on_step)
            seconds = time.monotonic() - t0
            # and a few after it: the site answers on the far side of the switch too
            after = load.result.sent
            while load.result.sent < after + 5 and time.monotonic() - t0 < seconds + 30:
                time.sleep(0.02)
        finally:
            result = load.stop()
        assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-1500:]}" for s in ev.failed_steps) or ev.program_error
        return Rollout(ev, result, load.plain_ok, load.https_ok, seconds, t0 - load_started, milestones)

    def destroy_and_compare(self, state: Path) -> None:
        gone = replay.destroy(ROOT, "lab", state_path=state)
        assert gone.ok, [s.error for s in gone.failed_steps]
        for host, before in self.before.items():
            assert diff(before, snapshot(self.lab, host)) == [], host

"""Zero failed requests for every lifecycle step, under a load that touches the database (issue 9).

One lab boot, 3 nodes with the cluster mesh on (the committed lab stack), mm4 booted plain and
waiting to be added. For each step the load of tests/lab/test_rollout.py (BrowserLoad: plain HTTP
on port 80, a redirect followed to verified HTTPS; the ping writes and deletes a row through the
node's database pool, whose connections live 1-2 s in the lab) runs through NGINX for the whole
step, from a few requests before it to a few after it:

first `up` (the rollout) -> second `up` (no change) -> add mm4 -> remove mm4 -> `destroy` (every
host byte-identical after); then up again, rotate the database password
(`database.rotatePassword`), destroy.

Each step runs under tools.load.under_load and asserts 0 failed requests; each figure (step,
requests, failed, seconds) is printed and collected in `Lifecycle.figures`, which
`bench/lifecycle.py` prints as a table (the README's figures); the bench runs these very test
functions.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab import replay
from lab.hosts import Lab
from tests.helpers.lab import PING, PROXY_IP, SERVER_NAME, BrowserLoad, Ctx, diff, snapshot, stack_value
from tools.load import StepUnderLoad, under_load

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
NODES3 = [{"name": "mm1"}, {"name": "mm2"}, {"name": "mm3"}]
NODES4 = [*NODES3, {"name": "mm4"}]
HOSTS = ("mm1", "mm2", "mm3", "mm4", "proxy", "postgres", "mariadb")
Figure = StepUnderLoad[replay.Evaluation]


def run_under_load(
    ctx: Ctx, label: str, run: Callable[[Callable[[replay.Step], None]], replay.Evaluation]
) -> tuple[replay.Evaluation, StepUnderLoad[replay.Evaluation]]:
    """Run `run(on_step)` (one `up` or `destroy`) under tools.load.under_load with the browser
    load through NGINX (5 requests answered before it starts, 5 after it ended). The step must
    succeed. With failures, the steps that completed are printed with their times, next to the
    failure times (both from the step's start)."""
    load = BrowserLoad(SERVER_NAME, PROXY_IP, ctx.browser_ca, PING, interval=0.02, max_seconds=900)
    done: list[str] = []
    t0 = [0.0]

    def step() -> replay.Evaluation:
        t0[0] = time.monotonic()

        def on_step(s: replay.Step) -> None:
            if s.op != "same":
                done.append(f"{time.monotonic() - t0[0]:.1f}s {s.name} {s.op} {s.result}")

        return run(on_step)

    r = under_load(step, load, label=label)
    ev = r.value
    assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-1500:]}" for s in ev.failed_steps) or ev.program_error
    print(r)
    if r.failed:
        print(f"  failures at {r.failure_times} s; steps:", *done, sep="\n  ")
        for node in ("mm1", "mm2", "mm3", "mm4"):  # what the nodes said (the stand-in logs the DB error)
            said = ctx.lab.ssh(node, "journalctl -q -u mattermost --since -120s | grep -m3 'Unable to write' || true", check=False)
            print(f"  {node}: {said.stdout.strip()[-600:]}")
    return ev, r


class Lifecycle:
    """The steps, in order, against one state file (config overrides persist like `pulumi config set`)."""

    def __init__(self, lab: Lab, tmp: Path):
        self.ctx = Ctx(lab, tmp)
        self.state = tmp / "zero.json"
        self.nodes: list[dict[str, str]] = NODES3
        self.database: dict[str, Any] = dict(stack_value("database"))
        self.stack = "lab"
        self.extra: dict[str, Any] = {}
        """More config overrides (e.g. dbPassword)."""
        self.figures: list[Figure] = []
        """What the load saw in each step, in order (bench/lifecycle.py prints them)."""

    def boot(self) -> None:
        """The seeded before state with mm4 booted (plain, not in the stack yet)."""
        self.ctx.lab.down()
        self.ctx.lab.up(nodes=4, extra=[])
        self.ctx.before = {h: snapshot(self.ctx.lab, h) for h in HOSTS}

    def run(
        self, label: str, run: Callable[[Callable[[replay.Step], None]], replay.Evaluation]
    ) -> tuple[replay.Evaluation, Figure]:
        ev, figure = run_under_load(self.ctx, label, run)
        self.figures.append(figure)
        return ev, figure

    def up(self, step: str) -> tuple[replay.Evaluation, Figure]:
        config = {**self.ctx.config, "nodes": self.nodes, "database": self.database, **self.extra}
        return self.run(step, lambda cb: replay.up(ROOT, self.stack, state_path=self.state, config=config, on_step=cb))

    def first_up(self) -> Figure:
        return self.up("first up")[1]

    def second_up(self) -> Figure:
        ev, fig = self.up("second up")
        assert {s.name: s.op for s in ev.steps if s.op != "same"} == {}
        return fig

    def add_node(self) -> Figure:
        self.nodes = NODES4
        return self.up("add a node")[1]

    def remove_node(self) -> Figure:
        self.nodes = NODES3
        ev, fig = self.up("remove a node")
        assert diff(self.ctx.before["mm4"], snapshot(self.ctx.lab, "mm4")) == []
        return fig

    def rotate_password(self) -> Figure:
        """The explicit rotation: `database.rotatePassword: true` generates a new password."""
        self.database = {**self.database, "rotatePassword": True}
        ev, fig = self.up("rotate the database password")
        assert "database-password" in {s.name for s in ev.steps if s.op == "create"}
        return fig

    def destroy(self, step: str = "destroy", compare: bool = True) -> Figure:
        _, fig = self.run(step, lambda cb: replay.destroy(ROOT, self.stack, state_path=self.state, on_step=cb))
        if compare:
            self.compare()
        return fig

    def compare(self) -> None:
        for host, before in self.ctx.before.items():
            assert diff(before, snapshot(self.ctx.lab, host)) == [], host


@pytest.fixture(scope="module")
def life(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Lifecycle:
    c = Lifecycle(lab, tmp_path_factory.mktemp("zero"))
    c.boot()
    return c


def test_first_up(life: Lifecycle) -> None:
    assert life.first_up().failed == 0


def test_second_up(life: Lifecycle) -> None:
    assert life.second_up().failed == 0


def test_adding_a_node(life: Lifecycle) -> None:
    assert life.add_node().failed == 0


def test_removing_a_node(life: Lifecycle) -> None:
    assert life.remove_node().failed == 0


def test_destroy(life: Lifecycle) -> None:
    assert life.destroy().failed == 0


def test_rotating_the_database_password(life: Lifecycle) -> None:
    """A second lifecycle on the same boot (the first one's destroy put every byte back): up,
    then the explicit rotation."""
    life.state = life.ctx.tmp / "rotate.json"
    life.up("up before the rotation")
    assert life.rotate_password().failed == 0


def test_destroy_after_a_rotation(life: Lifecycle) -> None:
    """The reverse of the rotation too: the nodes go back to the site's own password while the
    database still takes it."""
    try:
        assert life.destroy("destroy after a rotation").failed == 0
    finally:
        print("\n".join(str(f) for f in life.figures))


VERSION_FILE = "/opt/mattermost/bin/mmstandin/VERSION"


def test_mariadb_rotation_and_its_destroy(life: Lifecycle) -> None:
    """The same rotation on MariaDB (Mattermost <= v10: the nodes' stand-ins report 10.11.3 for
    this test, as in test_lifecycle): the nodes first move onto MariaDB with the site's MariaDB
    password (`dbPassword`; a change of database, not asserted), then the explicit rotation and
    destroy run under the load."""
    lab = life.ctx.lab
    own = {n: lab.ssh(n, f"cat {VERSION_FILE}").stdout for n in ("mm1", "mm2", "mm3")}
    for n in own:
        lab.ssh(n, f"printf '10.11.3\\n' > {VERSION_FILE}")
    try:
        life.stack, life.state = "lab-mysql", life.ctx.tmp / "mysql.json"
        life.database = {"engine": "mysql", "host": "mariadb"}
        life.extra = {"dbPassword": replay.Secret(lab.inventory()["databases"]["mysql"]["password"])}
        life.up("MariaDB: nodes move onto it")
        life.extra = {}
        rotated = life.rotate_password()
        rotated.label = "MariaDB: " + rotated.label
        gone = life.destroy("MariaDB: destroy after a rotation", compare=False)
    finally:
        for n, text in own.items():
            lab.ssh(n, f"printf '%s\\n' {shlex.quote(text.strip())} > {VERSION_FILE}")
        print("\n".join(str(f) for f in life.figures))
    life.compare()
    assert rotated.failed == 0 and gone.failed == 0, (rotated, gone)

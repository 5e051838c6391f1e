"""The database password of a running site is not changed by surprise (issue 9).

The lab's "before" state is a running site: three nodes whose config.json DSN carries the
Mattermost user's password, and a database that accepts it. The nodes' stand-ins go through a
database/sql-like pool with 1-2 s connection lifetimes (lab/seeding.py LAB_POOL), so each node logs
in to its database again every few seconds, as a busy real node does over an hour. The load asks
for /api/v4/system/ping?get_server_status=true, which needs such a login whenever the pool has no
live connection.

1. The first `up` WITHOUT `dbPassword` fails no request and leaves the password the site had:
   changing it before every node switched would make each unswitched node fail its next login
   (and a node whose switch rolled back could not start at all).
2. The password never appears in any command text of that up.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from lab import replay
from lab.hosts import Lab
from tests.helpers.lab import NODES3, Ctx, stack_value

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ctx(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Ctx:
    c = Ctx(lab, tmp_path_factory.mktemp("dbpw"))
    c.fresh(3)
    return c


def _login(lab: Lab, password: str) -> str:
    """A plain-or-TLS login as mmuser from mm1 with `password` (given on stdin)."""
    script = (
        "import sys, psycopg2\n"
        "pw = sys.stdin.read()\n"
        "try:\n"
        "    c = psycopg2.connect(host='10.251.0.21', user='mmuser', password=pw, dbname='mattermost',\n"
        "                         sslmode='prefer', connect_timeout=10)\n"
        "    print('ok')\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, str(e).splitlines()[0])\n"
    )
    return lab.ssh("mm1", f"python3 -c {shlex.quote(script)}", input=password).stdout.strip()


def test_first_up_without_db_password_keeps_the_sites_password_and_fails_no_request(ctx: Ctx) -> None:
    password = ctx.lab.inventory()["databases"]["postgres"]["password"]
    state = ctx.tmp / "keep.json"
    overrides: dict[str, Any] = {"nodes": NODES3, "cluster": {**stack_value("cluster"), "enabled": False}}
    r = ctx.rollout(state, **overrides)
    print(r.report("3 nodes, first up without dbPassword"))
    assert r.plain_ok > 0 and r.https_ok > 0, "the load must span the switch from plain to HTTPS"
    assert _login(ctx.lab, password) == "ok", "the site's password must still be the user's password"
    commands = [
        str(res["inputs"].get(k, ""))
        for res in json.loads(state.read_text())["resources"]
        if res["type"] == "command:remote:Command"
        for k in ("create", "update", "delete")
    ]
    assert commands and all(password not in c for c in commands), "the password travels on stdin only"

    again = replay.up(ROOT, "lab", state_path=state, config={**ctx.config, **overrides})
    assert again.ok and {s.name for s in again.steps if s.op != "same"} == set()
    ctx.destroy_and_compare(state)
    assert _login(ctx.lab, password) == "ok"
    assert r.load.failed == 0, r.report("3 nodes, first up without dbPassword")

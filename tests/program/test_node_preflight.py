"""The per-node preflight in the program graph (Pulumi's mock runtime, no SSH): one `<node>-preflight`
per node, read-only (no delete), checked against the values the stack decides, and ahead of
every command that changes any host; mixed versions in one cluster stop the program. That it
runs again when what it checks changes is a diff over an earlier state: the replay engine's
(tests/replay/test_program_over_state.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.config.schema import COPY_SUFFIX, UPLOAD_SUFFIX, helper_name
from components.deployment import DEPLOYMENT_TYPE
from components.host_helper_render import remove_copy_command
from components.remote_files_render import READ_COMMAND, read_script_source
from tests.helpers.program import Program, deps, prod_config, prod_nodes
from tests.helpers.pulumi_mocks import COMMAND

NODES = ("mm1", "mm2", "mm3")


def script(res: Any) -> str:
    """The preflight script a node runs: a short `sh` call runs what its stdin names in the
    host's copy of the helper file, without the installed helper (nothing may be installed
    before every preflight passed)."""
    assert res.inputs["create"] == READ_COMMAND, res.inputs["create"]
    return read_script_source(res.inputs["stdin"])


@pytest.fixture(scope="module")
def prod(program: Any) -> Program:
    # without dbPassword: the first node's current DSN is read (and waits for the preflights too)
    ev = program(prod_config(), stack="prod")
    assert not ev.program_error, ev.program_error
    assert "database-current-password" in {r.name for r in ev.resources}
    return ev


@pytest.mark.parametrize("stack", ["prod", "lab"])
def test_one_read_only_preflight_per_node_with_the_stacks_values(stack: str, prod: Program, lab: Program) -> None:
    ev = prod if stack == "prod" else lab
    version = "10.11.3" if stack == "prod" else "11.1.0"
    driver = "mysql" if stack == "prod" else "postgres"
    for i, node in enumerate(NODES):
        r = ev.get(f"{node}-preflight")
        assert r.type == COMMAND
        assert r.parent_urn == ev.get("deployment", DEPLOYMENT_TYPE).urn
        assert r.inputs.get("delete") is None, "it changes nothing, so it undoes nothing"
        assert "update" not in r.inputs, "an update runs the same read"
        create = script(r)
        assert create.startswith("set -eu\n")
        for line in (
            f"node={node}\n",
            f"address={ev.outputs['nodes'][node]['address']}\n",
            "unit=mattermost\n",
            "install_dir=/opt/mattermost\n",
            f"version={version}\n",
            "version_key=mattermost.version\n",
            "cluster_enabled=true\n",  # both stacks run their three nodes as a cluster
            "own_env=/etc/mattermost-tls/mattermost.env\n",
            f"driver={driver}\n",
        ):
            assert line in create, (node, line)
        assert f"nodes[{i}]" not in create


@pytest.mark.parametrize("stack", ["prod", "lab"])
def test_no_host_changes_before_every_node_passed_its_preflight(stack: str, prod: Program, lab: Program) -> None:
    ev = prod if stack == "prod" else lab
    preflights = {f"{n}-preflight" for n in NODES}
    # MySQL: the database's read-only accounts check (and its no-command verdict) is a preflight too
    db_checks = {"database-accounts", "database-accounts-checked"} & {r.name for r in ev.by_type(COMMAND)}
    assert bool(db_checks) == (stack == "prod"), "prod runs MariaDB, lab PostgreSQL"
    # each node host's `<helper>-copy` runs nothing on `up` (no create); its delete removes the
    # copy of the helper the preflight read its check from (the one thing a host gets before)
    copies = {r.name for r in ev.by_type(COMMAND) if r.name.endswith(COPY_SUFFIX)}
    for name in copies:
        assert ev.get(name).inputs.get("create") is None and ev.get(name).inputs["delete"] == remove_copy_command()
    # (a command with no text, such as the cluster's key list, runs nothing on any host)
    commands = {r.name for r in ev.by_type(COMMAND) if any(r.inputs.get(k) for k in ("create", "update", "delete"))}
    commands -= preflights | db_checks | copies
    assert len(commands) > 20
    for name in commands:
        assert preflights | db_checks <= deps(ev, name), f"{name} may run before a preflight"
    hosts = set()
    for n in NODES:
        # the node's own first step (its CA file; the restart waits for that) waits for it
        # directly, not only through the other components
        assert ev.get(f"{n}-preflight").urn in ev.get(f"{n}-db-ca").dependencies
        assert ev.get(f"{n}-db-ca").urn in ev.get(f"{n}-tls-files").dependencies
        helper = helper_name(ev.get(f"{n}-preflight").inputs["connection"]["host"], 22)
        hosts.add(helper)
        waits = {d for d in deps(ev, f"{n}-preflight") if ev.get(d).custom}
        assert waits == {helper + UPLOAD_SUFFIX, helper + COPY_SUFFIX}, "the preflight waits for its host's copy alone"
    assert copies == {h + COPY_SUFFIX for h in hosts}


def test_a_per_node_version_is_checked_under_its_own_key(program: Any, lab_config: dict[str, Any]) -> None:
    nodes = [{"name": "mm1"}, {"name": "mm2", "version": "11.1"}, {"name": "mm3"}]
    ev = program({**lab_config, "nodes": nodes, "cluster": {"enabled": False}})
    create = script(ev.get("mm2-preflight"))
    assert "version=11.1\n" in create and "version_key='nodes[1].version'\n" in create
    assert "cluster_enabled=false\n" in create
    assert "version_key=mattermost.version\n" in script(ev.get("mm1-preflight"))


def test_mixed_versions_in_one_cluster_stop_the_preview(program: Any) -> None:
    nodes = copy.deepcopy(prod_nodes())
    nodes[2]["version"] = "10.5.1"
    ev = program(prod_config(nodes=nodes), stack="prod")
    assert ev.program_error
    assert "mattermost-transport-encryption:nodes[2].version" in ev.program_error
    assert "node mm3 says 10.5.1 but mm1 says 10.11.3" in ev.program_error
    assert [r for r in ev.resources if r.custom] == []
    # the same versions without a cluster are separate servers: allowed
    ok = program(prod_config(nodes=nodes, cluster={"enabled": False}), stack="prod")
    assert not ok.program_error, ok.program_error

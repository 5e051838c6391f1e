"""Restructuring the program never renames a resource: every URN the program registered before
the `Deployment` component (captured from main, tests/replay/data/urns_main.json) is still
registered, or is an alias of the resource that took its place (so a real stack moves the
resource in its state instead of deleting and creating it: a replaced host command is an outage).

Regenerate the baseline only on purpose (a rename that ships with its aliases):
`venv/bin/python -m tests.replay.test_urns > tests/replay/data/urns_main.json` on main."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.config.schema import COPY_SUFFIX, UPLOAD_SUFFIX
from components.deployment import DEPLOYMENT_TYPE
from components.remote_files_render import read_manifest, read_script_source
from components.shell import without_comment_lines
from components.ssh_keys import compact_private_key
from lab.replay import Secret, State, evaluate
from lab.replay.state import load as load_state
from tests.helpers.program import CLUSTER_TYPE, KEY, PROJECT_DIR, lab_config_for, write_inventory

BASELINE = Path(__file__).parent / "data" / "urns_main.json"
MAIN = "be1639d"
"""The commit of main the baseline was captured from."""

REMOVED_SINCE_MAIN = ("-cluster-ready", "-cluster-units", "-cluster-preflight", "-cluster-sshd")
"""Name endings of resources main had that this program drops on purpose: `<node>-cluster-ready`,
a barrier without a host command (each node's restart now waits for `cluster-gossip-stopped`
directly, issue 11); an upgrade deletes it and nothing runs on a host. `<node>-cluster-units`:
its four unit files joined `<node>-cluster-firewall` (one command and SSH connection fewer per
node, issue 11); an upgrade's firewall update takes the paths over in the helper's owner ledger,
and the units' delete then leaves them as they are (tests/lab/test_cluster.py upgrade tests).
`<node>-cluster-preflight`: a read-only check (no delete script) that now runs in the node's
own preflight; an upgrade deletes it and nothing runs on a host. `<node>-cluster-sshd`: its two
files and its hooks joined `<node>-cluster-firewall` (as the units did); its delete then leaves
the files, which belong to the firewall's command in the ledger."""


UPDATED_SINCE_MAIN = ("-cluster-firewall", "-preflight")
"""Name endings of main's resources this program updates on purpose: `<node>-cluster-firewall`
lists the four unit files of the removed `<node>-cluster-units` (every byte the same on the host,
so the helper installs and activates nothing; it only records the new owner in its ledger).
A node's `<node>-preflight` (with the cluster on) also runs the removed `<node>-cluster-preflight`'s
check: a read-only script, run again. `<node>-cluster-firewall` also lists sshd's two files
(every byte the same: the ledger records the new owner; validate and activate do not run)."""


HELPER_INSTALL = "host-helper-"
"""Each host's helper install (`host-helper-<address>`) is updated on purpose since the helper
travels as a file asset (issue 11: state per node): its upload `host-helper-<address>-upload` is
a create, and the install's new text reads the upload (same helper bytes on the host). A node
host's `host-helper-<address>-copy` (a delete only: the removal of the copy a node's preflight
reads its check from) is new, a create that runs nothing."""


def _updated(name: str) -> bool:
    return name.endswith(UPDATED_SINCE_MAIN) or (name.startswith(HELPER_INSTALL) and not name.endswith((UPLOAD_SUFFIX, COPY_SUFFIX)))


def _removed(urn_or_name: str) -> bool:
    return urn_or_name.endswith(REMOVED_SINCE_MAIN)


def _as_run(inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs as pulumi-command runs them: an `update` text equal to `create` is the same as
    none (commandController.go `Command.Update` runs `create` then)."""
    out = dict(inputs)
    if "update" in out and out["update"] == out.get("create"):
        del out["update"]
    # the same SSH key in its shortest form (components/ssh_keys.py) logs in alike
    connection = out.get("connection")
    if isinstance(connection, dict) and isinstance(connection.get("privateKey"), str):
        out["connection"] = {**connection, "privateKey": compact_private_key(connection["privateKey"])}
    return out


def _same_on_host(old: Any, new: Any) -> bool:
    """An update whose only change is how its inputs are written, not what it does on the host:
    an `update` text equal to `create` dropped, the SSH key in another form (_as_run), every
    other input the same, and the
    helper input reads the same once its sections are resolved (a section that now names an
    entry of the helper's library, format 3; a content packed since the packing threshold went
    down), or the read-only script it unpacks is the same. The helper then changes and
    activates nothing (its files are byte for byte the same), and a run script is the same
    script run again (each is safe to run twice); a read-only check that lost only its comment
    lines runs the same commands."""
    a, b = _as_run(old.inputs), _as_run(new.inputs)
    sa, sb = a.pop("stdin", None), b.pop("stdin", None)
    if a != b:
        return False
    if sa == sb:  # an update all the same: only how its inputs are written changed
        return True
    if not isinstance(sa, str) or not isinstance(sb, str):
        return False
    try:
        return read_manifest(sa) == read_manifest(sb)
    except ValueError:
        # a read-only check runs the same commands with or without its comment lines
        return without_comment_lines(read_script_source(sa)) == without_comment_lines(read_script_source(sb))


EVERYTHING = {
    "gitlab": {"enabled": True, "host": "gitlab", "mattermostExternalUrl": "https://mm.gitlab.lab", "externalPostgres": True},
    "teleport": {"enabled": True, "host": "plugin"},
    "teleportToken": Secret("bot-token-abcdefghijklmnop"),
}


def cases(lab: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The full lab config (every hop on), the MySQL and replica labs, and a password rotation."""
    return {
        "lab, everything on": ("lab", {**lab, **EVERYTHING}),
        "lab-mysql": ("lab-mysql", lab),
        "lab-replicas": ("lab-replicas", lab),
        "lab, password rotation": (
            "lab",
            {k: v for k, v in lab.items() if k != "dbPassword"}
            | {"database": {"engine": "postgres", "host": "postgres", "rotatePassword": True}},
        ),
    }


def registered(stack: str, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """URN -> its parent and the alias URNs it stands for: those it carries, multiplied out by its
    parent's as the engine does once the parent was found through one of its aliases
    (pkg/resource/deploy/step_generator.go `generateAliases` + `inheritedChildAlias`: the child
    under the parent's old URN, its name's parent-name prefix swapped for the old one)."""
    ev = evaluate(PROJECT_DIR, stack, config=config)
    assert not ev.program_error, ev.program_error
    aliases: dict[str, list[str]] = {}
    for r in ev.resources:  # parents register before their children
        own = list(r.aliases)
        if r.parent_urn:
            name, type_ = r.urn.rsplit("::", 1)[1], r.urn.split("::")[2].rsplit("$", 1)[-1]
            parent_name = r.parent_urn.rsplit("::", 1)[1]
            for old_parent in aliases.get(r.parent_urn, []):
                old_name = old_parent.rsplit("::", 1)[1] + name[len(parent_name):] if name.startswith(parent_name) else name
                head, chain = old_parent.split("::")[:2], old_parent.split("::")[2]
                chain = type_ if chain == "pulumi:pulumi:Stack" else f"{chain}${type_}"
                own.append("::".join([*head, chain, old_name]))
        aliases[r.urn] = own
    # an alias that names its parent (Alias(parent=...)) is under that parent's old URN once the
    # parent was found through its alias (`collapseAliasToUrn`: the named parent mapped through
    # `sg.aliased`); the old chains of every aliased parent, by its current chain
    old_chains = {
        r.urn.split("::")[2]: {a.split("::")[2] for a in aliases[r.urn]} for r in ev.resources if aliases[r.urn]
    }
    for r in ev.resources:
        for a in list(aliases[r.urn]):
            head, chain, name = a.split("::")[:2], a.split("::")[2], a.rsplit("::", 1)[1]
            parent_chain = chain.rsplit("$", 1)[0] if "$" in chain else ""
            for old in old_chains.get(parent_chain, ()):
                aliases[r.urn].append("::".join([*head, f"{old}${chain.rsplit('$', 1)[1]}", name]))
    return {r.urn: {"parent": r.parent_urn, "aliases": sorted(set(aliases[r.urn]))} for r in ev.resources}


@pytest.mark.parametrize("case", list(cases({})))
def test_every_urn_of_main_is_kept_or_aliased(case: str, lab_config: dict[str, Any]) -> None:
    stack, config = cases(lab_config)[case]
    before: dict[str, str | None] = json.loads(BASELINE.read_text())[case]
    now = registered(stack, config)
    by_alias = {alias: urn for urn, r in now.items() for alias in r["aliases"]}
    kept = {urn for urn in before if urn in now}
    moved = {urn: by_alias[urn] for urn in before if urn not in now and urn in by_alias}
    assert {u for u in set(before) - kept - set(moved) if not _removed(u)} == set(), "URNs of main neither registered nor aliased"
    for urn in kept:  # same URN: same parent (a URN carries its parent's type, not its name)
        assert now[urn]["parent"] == before[urn], urn
    for old, new in moved.items():
        # a move keeps the name and the type; only the parent chain may differ
        assert old.rsplit("::", 1)[1] == new.rsplit("::", 1)[1], (old, new)
        assert old.split("::")[2].rsplit("$", 1)[-1] == new.split("::")[2].rsplit("$", 1)[-1], (old, new)
    assert moved, "the two-phase steps' resources moved under their own components"


def _worktree(tmp_path_factory: pytest.TempPathFactory, commit: str) -> Iterator[Path]:
    """A git worktree of `commit`, removed afterwards."""
    tree = tmp_path_factory.mktemp(commit) / "tree"
    r = subprocess.run(["git", "-C", str(PROJECT_DIR), "worktree", "add", "--detach", str(tree), commit], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    yield tree
    subprocess.run(["git", "-C", str(PROJECT_DIR), "worktree", "remove", "--force", str(tree)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def main_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A git worktree of MAIN, removed afterwards."""
    yield from _worktree(tmp_path_factory, MAIN)


BEFORE_DEPLOYMENT = "30d4036"
"""The last commit of main whose `Deployment` was a plain class: every component stack-level."""

@pytest.fixture(scope="module")
def before_deployment_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A git worktree of BEFORE_DEPLOYMENT, removed afterwards."""
    yield from _worktree(tmp_path_factory, BEFORE_DEPLOYMENT)


def _main_state(tree: Path, stack: str, config: dict[str, Any], out: Path) -> State:
    """The state main's program leaves (a preview's), evaluated in its own process: this one has
    imported this tree's `components` already."""
    secrets = [k for k, v in config.items() if isinstance(v, Secret)]
    code = "\n".join([
        "import json, pathlib",
        "from lab.replay import Secret, evaluate",
        "from lab.replay.state import save",
        f"config = json.loads({json.dumps(config)!r})",
        f"config = {{k: Secret(v) if k in {secrets!r} else v for k, v in config.items()}}",
        f"ev = evaluate({str(tree)!r}, {stack!r}, config=config)",
        f"save(pathlib.Path({str(out)!r}), ev.state)",
    ])
    r = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return load_state(out)


@pytest.mark.parametrize("case", list(cases({})))
def test_an_upgrade_from_main_changes_nothing(
    case: str, lab_config: dict[str, Any], main_tree: Path, tmp_path: Path
) -> None:
    """The preview of this program against the state main's program left: every resource the
    same (the moved ones found through their aliases), only the steps' new components created,
    nothing deleted or replaced but what REMOVED_SINCE_MAIN and UPDATED_SINCE_MAIN name."""
    stack, config = cases(lab_config)[case]
    before = _main_state(main_tree, stack, config, tmp_path / "main.json")
    now = evaluate(PROJECT_DIR, stack, config=config, state=before)
    ops = {s.name: s.op for s in now.steps}
    # resources added since MAIN (this branch's components, other work merged later) are creates;
    # nothing of main's is deleted, replaced or changed
    changed = {n: op for n, op in ops.items() if op not in ("same", "create")}
    old, new = {r.name: r for r in before.resources}, {r.name: r for r in now.resources}
    restated = {n for n, op in changed.items() if op == "update" and n in old and _same_on_host(old[n], new[n])}
    allowed = {n: op for n, op in changed.items() if (_removed(n) and op == "delete") or (_updated(n) and op == "update")}
    assert {n: op for n, op in changed.items() if n not in allowed and n not in restated} == {}, changed
    assert all(
        ops[r.name] == "same" for r in before.resources if not (_removed(r.name) or _updated(r.name) or r.name in restated)
    ), [r.name for r in before.resources if ops[r.name] != "same"]
    assert {"proxy-site", "database-enforce-tls"} <= {r.name for r in now.resources if r.aliases}


def test_the_deployment_component_moves_the_prod_stack_without_a_change(before_deployment_tree: Path, tmp_path: Path) -> None:
    """The prod stack (cluster on) as BEFORE_DEPLOYMENT's program left it, previewed with this
    program: the Deployment component is the one create, every resource of the state is `same`
    (found through its own alias or the one inherited from its parent), nothing is deleted; but
    for each host's helper upload (a create) and install (an update): see HELPER_INSTALL, and
    what REMOVED_SINCE_MAIN and UPDATED_SINCE_MAIN name (the cluster's checks: deleted, and run
    again in each node's preflight)."""
    config = {"sshPrivateKey": Secret(KEY)}
    before = _main_state(before_deployment_tree, "prod", config, tmp_path / "before.json")
    assert any(r.type == CLUSTER_TYPE for r in before.resources), "the prod stack runs a cluster"
    assert not [r for r in before.resources if r.type == DEPLOYMENT_TYPE]
    now = evaluate(PROJECT_DIR, "prod", config=config, state=before)
    assert not now.program_error, now.program_error
    ops = {s.urn: s.op for s in now.steps}
    (deployment,) = now.by_type(DEPLOYMENT_TYPE)
    uploads = {
        r.urn: "create" for r in now.resources if r.name.startswith(HELPER_INSTALL) and r.name.endswith((UPLOAD_SUFFIX, COPY_SUFFIX))
    }
    installs = {r.urn: "update" for r in now.resources if _updated(r.name) and r.name.startswith(HELPER_INSTALL)}
    assert uploads and installs
    old = {r.name: r for r in before.resources}
    restated = {r.urn: "update" for r in now.resources if ops[r.urn] == "update" and r.name in old and _same_on_host(old[r.name], r)}
    removed = {r.urn: "delete" for r in before.resources if _removed(r.name)}
    checks = {
        r.urn: "update" for r in now.resources
        if _updated(r.name) and not r.name.startswith(HELPER_INSTALL) and ops[r.urn] == "update"
    }
    assert removed and checks
    assert {u: op for u, op in ops.items() if op != "same"} == {
        deployment.urn: "create", **uploads, **installs, **restated, **removed, **checks
    }
    assert len(now.resources) == len(before.resources) + 1 + len(uploads) - len(removed)
    kept = {r.urn for r in before.resources if r.urn not in removed}
    assert kept <= {a for r in now.resources for a in r.aliases}, "each old URN claimed"


if __name__ == "__main__":  # the baseline, from the tree this runs in
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        lab = lab_config_for(write_inventory(Path(tmp)))
        out = {}
        for name, (stack, config) in cases(lab).items():
            ev = evaluate(PROJECT_DIR, stack, config=config)
            assert not ev.program_error, ev.program_error
            out[name] = {r.urn: r.parent_urn for r in ev.resources}
        print(json.dumps(out, indent=1, sort_keys=True))

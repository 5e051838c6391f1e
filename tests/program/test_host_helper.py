"""The host helper inside the REAL program (Pulumi's mock runtime, no SSH): one helper per host,
every command on that host depends on it, and no command text grows with the files it installs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from components.deployment import DEPLOYMENT_TYPE
from components.host_helper import HOST_FILES
from components.host_helper_render import HELPER_SOURCE, SUDO, UPLOAD_PATH, host_helper_text
from components.remote_files_render import READ_COMMAND, host_entries, read_manifest
from lab.replay.props import ASSET_SIG, SIG_KEY
from tests.helpers.program import Program

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
LIMIT = 4096


@pytest.fixture(scope="module")
def cluster(program: Any, lab_config: dict[str, Any]) -> Program:
    nodes = [{"name": n} for n in ("mm1", "mm2", "mm3")]
    return program({**lab_config, "nodes": nodes, "cluster": {"enabled": True}})


def commands(ev: Program) -> list[Any]:
    """Commands that run something (the cluster's barriers and key directory run nothing)."""
    return [r for r in ev.resources if r.type == COMMAND and r.inputs.get("create")]


def test_no_command_text_is_over_4_kb(cluster: Program) -> None:
    sizes = {(r.name, k): len(t.encode()) for r in commands(cluster) for k in ("create", "update", "delete")
             if isinstance(t := r.inputs.get(k), str)}
    assert sizes and max(sizes.values()) <= LIMIT, sorted(sizes.items(), key=lambda x: -x[1])[:5]


def test_one_helper_per_host_and_every_command_on_it_depends_on_it(cluster: Program) -> None:
    """Except the read-only node preflights, which run before anything (the helper included) is
    installed on any host: every helper waits for all of them, through one barrier. A node
    host's upload waits for nothing: its preflight reads its check from the copy."""
    helpers = {r.inputs["connection"]["host"]: r for r in commands(cluster) if r.name.startswith("host-helper-")}
    preflights = [r for r in commands(cluster) if r.inputs["create"] == READ_COMMAND]
    assert sorted(r.name for r in preflights) == ["mm1-preflight", "mm2-preflight", "mm3-preflight"]
    others = [r for r in commands(cluster) if not r.name.startswith("host-helper-") and r not in preflights]
    assert set(helpers) == {r.inputs["connection"]["host"] for r in others}
    for r in others:
        helper = helpers[r.inputs["connection"]["host"]]
        assert helper.urn in r.dependencies, f"{r.name} must be created after and deleted before {helper.name}"
    passed = cluster.get("preflights-passed")
    live = cluster.get("proxy-live-site")
    assert {p.urn for p in preflights} <= set(passed.dependencies)
    for h in helpers.values():
        assert h.name == f"host-helper-{h.inputs['connection']['host']}" and not h.inputs.get("triggers")
        assert h.parent_urn == cluster.get("deployment", DEPLOYMENT_TYPE).urn
        upload = cluster.get(f"{h.name}-upload", COPY)
        assert upload.parent_urn == h.parent_urn and upload.inputs["connection"] == h.inputs["connection"]
        assert upload.urn in h.dependencies, f"{h.name} installs before its upload"
        # and, but for the proxy's (it runs the capture), after NGINX's live site was accepted
        # (its copy's entries come from keys and certificates: their URNs are not stored again)
        assert passed.urn in h.dependencies and set(h.dependencies) <= {passed.urn, live.urn, upload.urn}, (
            f"{h.name} is on the host before every preflight passed"
        )
        early = [r for r in preflights if r.inputs["connection"]["host"] == h.inputs["connection"]["host"]]
        # a node host's copy comes first (the preflight reads its check from it), every other after
        assert upload.dependencies == [] if early else set(upload.dependencies) <= {passed.urn, live.urn}, upload.name
        for r in (h, upload):
            assert not [u for us in r.property_dependencies.values() for u in us if u not in (passed.urn, live.urn, upload.urn)], r.name
        for p in early:
            assert cluster.get(f"{h.name}-copy").urn in p.dependencies, p.name
    assert sum(upload.dependencies == [] for upload in cluster.by_type(COPY)) == 3


def test_plain_commands_show_their_files_and_scripts_in_the_preview(cluster: Program) -> None:
    """Only secret manifests are hidden: the rest names every file (path, mode, owner, hash) and
    the commands that will run, so a preview's stdin diff reads like a plan."""
    readable = 0
    for r in commands(cluster):
        if r.name.startswith("host-helper-") or r.is_secret_input("stdin") or r.inputs["create"] == READ_COMMAND:
            continue
        m = read_manifest(r.inputs["stdin"])
        assert m.owner == r.name
        for entry in m.entries:
            kind, *_, path = entry.split(" ", 5)
            assert kind in ("file", "block") and path.startswith("/")
        readable += 1
    assert readable >= 3


def test_a_non_root_ssh_user_runs_every_command_through_sudo(program: Any, lab_config: dict[str, Any]) -> None:
    """README promises a user with passwordless sudo (issue 10): `sudo -n` never waits for a
    password, it fails at once if sudo would ask."""
    ev = program({**lab_config, "ssh": {"user": "deploy"}})
    texts = [t for r in commands(ev) for k in ("create", "update", "delete") if isinstance(t := r.inputs.get(k), str)
             if not r.name.startswith("host-helper-") and not r.name.endswith("-preflight")]
    assert texts and all(t.startswith(SUDO + "/bin/sh ") for t in texts), [t[:60] for t in texts if not t.startswith("sudo")][:3]
    # a node's preflight reads its check from the copy of the helper in the user's home as that
    # user, then runs it as root through the same sudo
    preflights = [r for r in commands(ev) if r.name.endswith("-preflight")]
    for r in preflights:
        assert r.inputs["create"] == READ_COMMAND and "\n" + SUDO + "/bin/sh -c " in r.inputs["stdin"]
    assert len(preflights) == 3
    # the helper's install and uninstall read and remove the upload in the user's home as that
    # user; what they do as root runs through the same sudo
    helpers = [r for r in commands(ev) if r.name.startswith("host-helper-")]
    for r in helpers:
        for k in ("create", "delete"):
            lines = r.inputs[k].split("\n")
            assert lines[0] == "set -eu" and any(line.startswith(SUDO + "/bin/sh -c ") for line in lines), (r.name, k)
            assert not any(line.startswith("/bin/sh") for line in lines), (r.name, k)


def test_the_helper_travels_as_a_file_asset_and_its_version_shows_in_the_install(cluster: Program) -> None:
    """The state holds the helper's path and SHA-256, not its text (issue 11: state per node);
    the install's text names the SHA-256 it accepts, so a preview shows a new helper version.
    Each host's copy is the helper, then the entries of the host's own library that its
    commands' inputs name, and nothing else."""
    uploads = [r for r in cluster.resources if r.type == COPY]
    assert uploads and all(r.name.startswith("host-helper-") and r.name.endswith("-upload") for r in uploads)
    with_entries = 0
    for r in uploads:
        source = r.inputs["source"]
        assert set(source) == {SIG_KEY, "path"} and source[SIG_KEY] == ASSET_SIG and r.inputs["remotePath"] == UPLOAD_PATH
        path = Path(source["path"])
        text = path.read_text()
        sha = hashlib.sha256(text.encode()).hexdigest()
        assert path.parent.parent == HOST_FILES and path.name == f"{r.name.removesuffix('-upload')}-{sha[:16]}.sh"
        install = cluster.get(r.name.removesuffix("-upload"))
        assert not install.inputs.get("stdin") and f"want={hashlib.sha256(text.encode()).hexdigest()}" in install.inputs["create"]
        assert "update" not in install.inputs, "an update runs `create`: the text is stored once"
        host = r.inputs["connection"]["host"]
        named: dict[str, str] = {}
        for c in commands(cluster):
            if c.inputs["connection"]["host"] == host and isinstance(c.inputs.get("stdin"), str):
                named.update(host_entries(c.inputs["stdin"]))
        assert text == host_helper_text(named), r.name
        assert text.startswith(HELPER_SOURCE.read_text())
        with_entries += bool(named)
    assert with_entries >= 3, "every node's cluster tables are entries of its host's library"


def test_no_secret_reaches_a_hosts_copy_of_the_helper(cluster: Program) -> None:
    """The copy is a plain file here and 0755 on the host: a secret input names no entry, and no
    secret value (keys, passwords, the SSH key) appears in any copy."""
    for c in commands(cluster):
        if c.is_secret_input("stdin") and c.inputs["create"] != READ_COMMAND and read_manifest(c.inputs["stdin"]).entries:
            # a secret input names entries only for files others may read (a node's certificate)
            m = read_manifest(c.inputs["stdin"])
            readable = {t for e, t in zip(m.entries, m.contents, strict=True) if int(e.split(" ")[1], 8) & 0o004}
            assert set(host_entries(c.inputs["stdin"]).values()) <= {t if t.endswith("\n") else t + "\n" for t in readable}, c.name
    # the secret files' contents (what others may not read on the host) and the SSH key
    secrets = [c.inputs["connection"]["privateKey"] for c in commands(cluster)]
    for c in commands(cluster):
        if c.is_secret_input("stdin") and c.inputs["create"] != READ_COMMAND and read_manifest(c.inputs["stdin"]).entries:
            m = read_manifest(c.inputs["stdin"])
            secrets += [text for entry, text in zip(m.entries, m.contents, strict=True) if int(entry.split(" ")[1], 8) & 0o004 == 0]
    copies = [Path(r.inputs["source"]["path"]).read_text() for r in cluster.resources if r.type == COPY]
    assert secrets and copies
    for secret in secrets:
        for line in secret.splitlines():
            if len(line) > 20:
                assert not any(line in copy for copy in copies), line[:30]


def test_the_cluster_tables_travel_as_host_entries_not_in_the_inputs(cluster: Program) -> None:
    """Each file line stays (a preview names the file that changes), the text does not."""
    for c in commands(cluster):
        if c.name.endswith(("-cluster-tunnels", "-cluster-firewall")):
            stdin = c.inputs["stdin"]
            m = read_manifest(stdin)
            assert all(e.startswith("file ") for e in m.entries) and len(m.entries) >= 2
            assert not [line for line in stdin.splitlines() if line.startswith("| ") and len(line) > 100], c.name
            assert host_entries(stdin), c.name


def test_file_commands_store_no_update_text(cluster: Program) -> None:
    """managed_files/managed_block: an update runs `create` (pulumi-command commandController.go
    `Command.Update` without an `update` text), the helper's `files-apply`/`block-apply`, so the
    same text is not stored twice more per command."""
    applies = [r for r in commands(cluster) if "-apply " in (r.inputs.get("create") or "")]
    assert len(applies) >= 10
    assert [r.name for r in applies if "update" in r.inputs] == []
    # run scripts keep theirs: `run-update` runs the update script (the create one when none)
    runs = [r for r in commands(cluster) if "run-create " in (r.inputs.get("create") or "")]
    assert runs and all("run-update " in r.inputs["update"] for r in runs)


def test_root_runs_the_helper_directly(cluster: Program) -> None:
    texts = [r.inputs["create"] for r in commands(cluster)]
    assert not any("sudo" in t.split("\n", 1)[0] for t in texts)


def test_a_secret_input_sends_its_public_files_as_host_entries_and_keeps_the_rest(cluster: Program) -> None:
    """A node's TLS files: the certificate and the drop-in are entries of the host's library
    (ManagedFile.host_library); the key and the env file (the DSN's password, which may come from
    a command's output) stay in the input, which stays secret."""
    tls = cluster.get("mm1-tls-files")
    assert tls.is_secret_input("stdin")
    sections = {line.split(" (content of ")[1].rstrip(")"): line for line in tls.inputs["stdin"].splitlines()
                if line.startswith("section content-")}
    public = [p for p in sections if p.endswith((".crt", ".conf"))]
    private = [p for p in sections if p.endswith((".key", ".env"))]
    assert len(public) == 2 and len(private) == 2, sections
    assert all(" lib=" in sections[p] for p in public) and not any(" lib=" in sections[p] for p in private), sections

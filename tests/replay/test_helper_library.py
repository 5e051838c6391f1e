"""The host helper's library (format 3 inputs): it holds every text the program sends alike to
every host, and those texts then stay out of the state (issue 11: state per node)."""

from __future__ import annotations

import json

import pytest

from components import remote_files_render
from components.host_helper_render import helper_library
from lab.replay import evaluate
from tests.helpers.program import PROJECT_DIR
from tools import helper_library as tool


def test_the_library_holds_every_text_the_program_sends_alike() -> None:
    """A template changed without `venv/bin/python -m tools.helper_library` would send its text
    in full again (correct, but the state grows back): this names it."""
    wanted = tool.collect()
    assert len(wanted) >= 10  # the cluster's program, hooks and units, the database's scripts
    assert tool.missing(wanted) == []


def _stdin_bytes(monkeypatch: pytest.MonkeyPatch, library: bool) -> tuple[int, dict[str, str]]:
    if not library:
        monkeypatch.setattr(remote_files_render, "helper_library", dict)
        # nor the host's own library (components/host_helper.py): every text in the inputs
        monkeypatch.setattr(remote_files_render, "HOST_ENTRY_MIN", 1 << 40)
    names, prefix, cluster = tool.RUNS[0]
    config = tool.sample_config(tool.VARIANTS[1], names, prefix, cluster)
    ev = evaluate(PROJECT_DIR, "prod", config=config)
    stdins = {r.name: r.inputs["stdin"] for r in ev.resources if isinstance(r.inputs.get("stdin"), str)}
    return len(json.dumps(ev.state.to_json())), stdins


def test_inputs_name_library_entries_and_read_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    size, stdins = _stdin_bytes(monkeypatch, library=True)
    firewall = stdins["mm1-cluster-firewall"]
    assert firewall.startswith("mattermost-transport-encryption helper input v3\n")
    assert "#!/bin/sh" not in firewall  # /usr/local/sbin/mm-cluster: an entry
    assert any(f" lib={key} (content of /usr/local/sbin/mm-cluster)" in firewall for key in helper_library())
    read = {n: remote_files_render.read_manifest(s) for n, s in stdins.items() if s.startswith("mattermost-transport-encryption helper")}
    full_size, full = _stdin_bytes(monkeypatch, library=False)
    assert full.keys() == stdins.keys() and read
    assert not [s for s in full.values() if s.startswith("mattermost-transport-encryption helper input v3")]
    named = 0
    for name, manifest in read.items():
        other = remote_files_render.read_manifest(full[name])
        assert [e.rsplit(" ", 1)[1] for e in manifest.entries] == [e.rsplit(" ", 1)[1] for e in other.entries], name
        assert manifest.sections.keys() == other.sections.keys(), name
        # the sections sent as a library entry read exactly as the full text the same config sends
        # (the others may hold keys, generated anew by each evaluation)
        # (the host's own entries hold them too: components/host_helper.py)
        shipped = [f" lib={key} " for key in helper_library()]
        for section in [line.split(" ")[1] for line in stdins[name].splitlines()
                        if line.startswith("section ") and any(k in line + " " for k in shipped)]:
            assert manifest.sections[section] == other.sections[section], (name, section)
            named += 1
    assert named >= 20
    # measured 2026-11-29: the 3-node cluster stack's whole state 21 % smaller with the shipped
    # library and each host's own (479 vs 609 kB; 14 % with the shipped library alone)
    assert size < full_size * 0.82, (size, full_size)

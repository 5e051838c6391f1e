"""The platform is chosen per host: the components hand each host's own Platform to its renderers.

A second family (the unit tests' FAKE, registered for this test only) on ONE node changes what
that node gets (trust store, sshd drop-in, firewall tools) and nothing on its peers, and an
unknown family fails the program before any resource exists."""

from __future__ import annotations

from typing import Any

import pytest

from components.platform import PLATFORMS
from components.remote_files_render import read_manifest
from tests.helpers.platform import FAKE
from tests.helpers.program import Program, run_stack


def _stdin(ev: Program, name: str) -> str:
    stdin = ev.get(name).inputs["stdin"]
    return str(getattr(stdin, "value", stdin))


def _everything(ev: Program, host: str) -> str:
    """Every command text and helper input of the resources named after `host`."""
    out = []
    for r in ev.resources:
        if not r.name.startswith(f"{host}-"):
            continue
        out += r.command_texts()
        stdin = r.inputs.get("stdin")
        text = getattr(stdin, "value", stdin)
        if isinstance(text, str) and text.startswith("mattermost-transport-encryption helper input"):
            manifest = read_manifest(text)
            out += [*manifest.sections.values(), *manifest.entries]
    return "\n".join(out)


@pytest.fixture(scope="module")
def fake_mm1(lab_config: dict[str, Any]) -> Program:
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(PLATFORMS, FAKE.name, FAKE)
        nodes = [{"name": "mm1", "platform": FAKE.name}, {"name": "mm2"}, {"name": "mm3"}]
        ev = run_stack("lab", {**lab_config, "nodes": nodes})
    assert not ev.program_error, ev.program_error
    return ev


def test_only_the_node_that_names_another_family_gets_its_paths_and_commands(fake_mm1: Program) -> None:
    mm1, mm2 = _everything(fake_mm1, "mm1"), _everything(fake_mm1, "mm2")
    assert "update-fake-trust" in mm1 and "update-ca-certificates" not in mm1
    assert "/etc/pki/ca-trust/source/anchors/mattermost-transport-ca.pem" in mm1
    assert "/etc/ssh/sshd.d/50-mattermost-cluster-tunnel.conf" in mm1 and "/etc/ssh/sshd_config.d" not in mm1
    assert "iptables-nft-restore -w -n" in mm1
    assert "update-ca-certificates" in mm2 and "update-fake-trust" not in mm2
    assert "/etc/ssh/sshd_config.d/50-mattermost-cluster-tunnel.conf" in mm2 and "iptables-nft" not in mm2


def test_the_trust_files_go_where_the_hosts_family_reads_them(fake_mm1: Program) -> None:
    paths = {e.rsplit(" ", 1)[1] for e in read_manifest(_stdin(fake_mm1, "mm1-db-ca")).entries}
    assert "/etc/pki/ca-trust/source/anchors/mattermost-transport-ca.pem" in paths
    paths = {e.rsplit(" ", 1)[1] for e in read_manifest(_stdin(fake_mm1, "mm2-db-ca")).entries}
    assert "/usr/local/share/ca-certificates/mattermost-transport-ca.crt" in paths


def test_an_unknown_family_fails_the_preview_naming_the_key(lab_config: dict[str, Any]) -> None:
    nodes = [{"name": "mm1"}, {"name": "mm2", "platform": "rhel"}, {"name": "mm3"}]
    ev = run_stack("lab", {**lab_config, "nodes": nodes})
    assert "nodes[1].platform: unknown platform 'rhel': supported: debian" in ev.program_error, ev.program_error
    assert not ev.resources

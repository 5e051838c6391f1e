"""The whole program on Pulumi's mock runtime (tests/helpers/program.py, no SSH): the full graph of
the lab and prod stacks, rollout order, secrets, outputs, and bad input that stops the program
before any resource exists. Adding a node over an earlier state is the replay engine's
(tests/replay/test_program_over_state.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from components.config import SECRET_KEYS
from components.deployment import DEPLOYMENT_TYPE
from tests.helpers.program import KEY, STACK_TYPE, Program, Secret, deps, run_stack
from tests.helpers.pulumi_mocks import COMMAND
from tests.helpers.stack_config import BAD, good


@pytest.mark.parametrize("stack", ["prod", "lab"])
def test_full_graph(stack: str, prod: Program, lab: Program) -> None:
    ev = prod if stack == "prod" else lab
    names = {r.name for r in ev.resources}
    for node in ("mm1", "mm2", "mm3"):
        assert {f"{node}", f"{node}-server-key", f"{node}-server-cert", f"{node}-tls-files"} <= names
    assert {"pki", "pki-ca-key", "pki-ca-cert", "database", "database-server-tls", "proxy", "proxy-site"} <= names
    assert len(ev.by_type(COMMAND)) >= 6
    for r in ev.resources:
        assert r.parent_urn, f"{r.name} has no parent"
    components = {r.type for r in ev.resources if not r.custom}
    assert {
        "mattermost-tls:pki:Pki",
        "mattermost-tls:node:MattermostNode",
        "mattermost-tls:nginx:NginxProxy",
        "mattermost-tls:database:Database",
    } <= components


@pytest.mark.parametrize("stack", ["prod", "lab"])
def test_the_deployment_is_the_parent_of_every_top_level_resource(stack: str, prod: Program, lab: Program) -> None:
    """One `Deployment` component under the stack; every other resource under it or under one of
    its descendants (none left at the stack's level); its outputs registered: the exports."""
    ev = prod if stack == "prod" else lab
    (deployment,) = ev.by_type(DEPLOYMENT_TYPE)
    assert deployment.name == "deployment" and f"::{STACK_TYPE}::" in str(deployment.parent_urn)
    urns = {r.urn for r in ev.resources}
    assert [r.name for r in ev.resources if r.parent_urn not in urns] == ["deployment"]
    top = [r for r in ev.resources if r.parent_urn == deployment.urn]
    assert {"pki", "proxy", "database", "preflights-passed", "mm1", "mm1-preflight"} <= {r.name for r in top}
    assert any(r.name.startswith("host-helper-") for r in top)
    assert ev.monitor is not None
    assert set(ev.monitor.outputs[deployment.urn]) == set(ev.outputs), "register_outputs: the exports"


@pytest.mark.parametrize("stack", ["prod", "lab"])
def test_rollout_order_db_then_nodes_then_proxy(stack: str, prod: Program, lab: Program) -> None:
    ev = prod if stack == "prod" else lab
    all_db = {r.name for r in ev.by_type(COMMAND) if r.name.startswith("database-")}
    enforce = {n for n in all_db if n.startswith("database-enforce-tls")}
    db_cmds = all_db - enforce
    assert db_cmds, "the database component registers commands"
    assert "database-enforce-tls" in enforce
    for node in ("mm1", "mm2", "mm3"):
        assert db_cmds <= deps(ev, f"{node}-tls-files"), f"{node} must restart only after database TLS is live"
        # phase 2 never precedes a node: a node still on plain (or rolled back) must reach the DB
        assert not enforce & deps(ev, f"{node}-tls-files"), f"{node} waits for the DB's TLS enforcement"
    for step in enforce:
        assert {"mm1-tls-files", "mm2-tls-files", "mm3-tls-files"} | db_cmds <= deps(ev, step), step
    assert {"mm1-tls-files", "mm2-tls-files", "mm3-tls-files"} <= deps(ev, "proxy-site"), "NGINX reloads last"
    order = [r.name for r in ev.resources]
    assert max(order.index(f"{n}-tls-files") for n in ("mm1", "mm2", "mm3")) < order.index("proxy-site")
    # zero downtime: the transitional site first, then one node at a time, in config order
    assert "proxy-transition" in deps(ev, "mm1-tls-files")
    assert "mm1-tls-files" in deps(ev, "mm2-tls-files") and "mm2-tls-files" in deps(ev, "mm3-tls-files")
    assert "mm3-tls-files" not in deps(ev, "mm2-tls-files")
    assert not {n for n in deps(ev, "proxy-transition") if n.endswith("-tls-files")}


@pytest.mark.parametrize("stack", ["prod", "lab"])
def test_no_secret_value_reaches_command_text_or_plain_outputs(stack: str, prod: Program, lab: Program) -> None:
    ev = prod if stack == "prod" else lab
    secrets: set[str] = set()
    for r in ev.resources:
        for path in r.secret_outputs:
            value = r.outputs.get(path.split(".")[0])
            if isinstance(value, str) and len(value) >= 8:
                secrets.add(value)
    secrets.add(KEY.strip())
    assert any("PRIVATE KEY" in s for s in secrets), "the check must see the private keys"
    assert len(secrets) >= 8
    for r in ev.by_type(COMMAND):
        text = "\n".join(r.command_texts())
        for s in secrets:
            assert s not in text, f"a secret value is in the command text of {r.name}"
            for line in s.splitlines():
                if len(line) > 20 and "-----" not in line:
                    assert line not in text, f"a line of a secret is in the command text of {r.name}"
        if r.inputs.get("stdin") is not None and any(s in str(r.inputs.get("stdin")) for s in secrets):
            assert r.is_secret_input("stdin"), f"{r.name} carries a secret on stdin without marking it secret"
            assert {"stdout", "stderr"} <= set(r.options.additional_secret_outputs), r.name
    plain_outputs = {k: v for k, v in ev.outputs.items() if k not in ev.secret_outputs}
    for s in secrets:
        assert s not in repr(plain_outputs)


def test_outputs_other_stacks_consume(prod: Program) -> None:
    out = prod.outputs
    assert out["caCertPem"].startswith("-----BEGIN CERTIFICATE-----")
    assert out["proxyUrl"] == "https://mattermost.example.com/"
    assert "mattermostDsn" in prod.secret_outputs and "tls=true" in out["mattermostDsn"]
    assert prod.outputs["databaseDriver"] == "mysql"
    assert set(out["nodes"]) == {"mm1", "mm2", "mm3"}
    for node in out["nodes"].values():
        assert len(node["certFingerprintSha256"].split(":")) == 32
        assert node["certExpiry"] and node["installed"]["key"].startswith("/")
    for k in ("caCertPem", "proxyUrl", "nodes", "caExpiry"):
        assert k not in prod.secret_outputs


def _override(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: Secret(v) if k in SECRET_KEYS else v for k, v in raw.items()}


@pytest.mark.parametrize("mutate,key,fix", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_stops_the_program_before_any_resource(mutate: Any, key: str, fix: str) -> None:
    raw = copy.deepcopy(good())
    mutate(raw)
    ev = run_stack("prod", _override(raw))
    assert ev.program_error, "the program must fail"
    assert f"mattermost-transport-encryption:{key}" in ev.program_error and fix in ev.program_error
    assert [r for r in ev.resources if r.custom] == [], "no resource may be registered"


def test_unknown_key_and_plain_secret_stop_the_program() -> None:
    unknown = run_stack("prod", {"sshPrivateKey": Secret(KEY), "nodez": []})
    assert "nodez: unknown key" in unknown.program_error and not unknown.resources
    plain = run_stack("prod", {"sshPrivateKey": KEY})
    assert "sshPrivateKey: this value is a secret but is stored in plain text" in plain.program_error
    assert not plain.resources


def test_gitlab_gets_its_own_role_and_its_own_enforce_step(program: Callable[..., Program], lab_config: dict[str, Any]) -> None:
    """GitLab's bundled Mattermost logs in to the external PostgreSQL with its own role: its
    gitlab.rb waits for that role (and its hostssl line), its own reject block waits for its
    switch, and the nodes' reject block waits for the nodes only. With the bundled database
    there is no GitLab role at all."""
    gitlab = {
        "enabled": True,
        "host": "gitlab",
        "mattermostExternalUrl": "https://mm.gitlab.lab",
        "externalPostgres": True,
    }
    ev = program({**lab_config, "gitlab": gitlab})
    gitlab_ready = ev.get("gitlab").name
    role = "database-gitlab-db-user-gitlab_mmuser"
    assert {role, "database-gitlab-pg-hba", "database-server-tls"} <= deps(ev, "gitlab-gitlab-rb")
    assert "database-db-user-mmuser" not in deps(ev, "gitlab-gitlab-rb"), "the nodes' role is not GitLab's"
    waits = deps(ev, "database-gitlab-enforce-tls")
    gitlab_cmds = {r.name for r in ev.by_type(COMMAND) if r.name.startswith("gitlab-")}
    assert gitlab_cmds and gitlab_cmds <= waits | {gitlab_ready}, (gitlab_cmds, waits)
    assert not {c for c in deps(ev, "database-enforce-tls") if c.startswith("gitlab-")}
    assert not {n for c in gitlab_cmds for n in deps(ev, c) if n.endswith("enforce-tls")}
    bundled = program({**lab_config, "gitlab": {**gitlab, "externalPostgres": False}})
    assert not {r.name for r in bundled.resources if r.name.startswith("database-gitlab")}

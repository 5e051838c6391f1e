"""Read replicas and database-stored configuration in the program graph (replay engine, no SSH):
each replica server gets its own TLS (cert, conf, hostssl, enforce after every node), every node's
env file carries verified-TLS DSNs for the replicas and, with configStore database, MM_CONFIG; the
stored configuration is checked read-only on the database host before anything changes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.remote_files_render import READ_COMMAND, read_script_source
from tests.helpers.certs import ssh_host_key
from tests.helpers.program import Program, deps, files_in, run_stack

NODES = ("mm1", "mm2", "mm3")
REPLICA = "10.251.0.22"
LABEL = "database-replica-pgreplica"


@pytest.fixture(scope="module")
def config(lab_config: dict[str, Any]) -> dict[str, Any]:
    return {
        **lab_config,
        "database": {
            "engine": "postgres",
            "host": "postgres",
            "replicas": [{"address": REPLICA, "host": "pgreplica", "ssh": {"hostKey": ssh_host_key()}}],
            "searchReplicas": [{"address": REPLICA, "host": "pgreplica", "ssh": {"hostKey": ssh_host_key()}}],
        },
        "nodes": [{"name": "mm1"}, {"name": "mm2", "configStore": "database"}, {"name": "mm3"}],
    }


@pytest.fixture(scope="module")
def ev(config: dict[str, Any]) -> Program:
    ev = run_stack("lab", config)
    assert not ev.program_error, ev.program_error
    return ev


def env_of(ev: Program, node: str) -> dict[str, str]:
    res = ev.get(f"{node}-tls-files")
    assert res.is_secret_input("stdin"), "the env file carries DSNs with the password"
    text = next(f for f in files_in(res) if "MM_SQLSETTINGS_DATASOURCE=" in f)
    return {k: v.strip('"') for k, _, v in (line.partition("=") for line in text.splitlines() if "=" in line)}


def test_one_set_of_tls_resources_per_replica_server(ev: Program) -> None:
    names = {r.name for r in ev.resources}
    # listed for reads and for search: one server, one set
    assert {LABEL, f"{LABEL}-server-cert", f"{LABEL}-server-tls", f"{LABEL}-pg-hba", f"{LABEL}-enforce-tls"} <= names
    assert sum(1 for n in names if n.startswith("database-replica-") and n.endswith("-server-tls")) == 1
    tls = ev.get(f"{LABEL}-server-tls")
    assert tls.inputs["connection"]["host"] == REPLICA
    assert "preflights-passed" in deps(ev, f"{LABEL}-server-tls"), "nothing changes on the replica before every preflight"


def test_nodes_switch_after_the_replica_serves_tls_and_it_enforces_after_all_of_them(ev: Program) -> None:
    for node in NODES:
        assert {f"{LABEL}-server-tls", f"{LABEL}-pg-hba"} <= deps(ev, f"{node}-tls-files")
    assert {f"{n}-tls-files" for n in NODES} <= deps(ev, f"{LABEL}-enforce-tls")
    assert f"{LABEL}-enforce-tls" not in {d for n in NODES for d in deps(ev, f"{n}-tls-files")}


def test_every_node_gets_verified_tls_dsns_for_the_replicas(ev: Program) -> None:
    for node in NODES:
        env = env_of(ev, node)
        main = env["MM_SQLSETTINGS_DATASOURCE"]
        replica = main.replace("@postgres:5432/", f"@{REPLICA}:5432/").replace("@10.251.0.21:5432/", f"@{REPLICA}:5432/")
        assert "sslmode=verify-full&sslrootcert=/etc/mattermost-tls/ca.crt" in replica
        assert env["MM_SQLSETTINGS_DATASOURCEREPLICAS"] == replica
        assert env["MM_SQLSETTINGS_DATASOURCESEARCHREPLICAS"] == replica


def test_only_the_database_stored_node_gets_mm_config_the_main_dsn(ev: Program) -> None:
    assert env_of(ev, "mm2")["MM_CONFIG"] == env_of(ev, "mm2")["MM_SQLSETTINGS_DATASOURCE"]
    assert "MM_CONFIG" not in env_of(ev, "mm1") and "MM_CONFIG" not in env_of(ev, "mm3")


def test_the_preflights_carry_the_stacks_targets(ev: Program) -> None:
    mm2, mm1 = (read_script_source(ev.get(f"{n}-preflight").inputs["stdin"]) for n in ("mm2", "mm1"))
    assert "config_store=database\n" in mm2 and "store_key='nodes[1].configStore'\n" in mm2
    assert "config_store=file\n" in mm1 and "store_key=mattermost.configStore\n" in mm1
    for s in (mm1, mm2):
        assert f"replica_targets=mmuser@{REPLICA}:5432/mattermost\n" in s
        assert f"search_targets=mmuser@{REPLICA}:5432/mattermost\n" in s


def test_the_stored_configuration_is_read_on_the_database_host_before_anything(ev: Program) -> None:
    check = ev.get("database-config-store-preflight")
    assert check.inputs["create"] == READ_COMMAND and check.inputs.get("delete") is None
    assert check.inputs["connection"]["host"] == "10.251.0.21"
    assert "SELECT Value FROM Configurations WHERE Active" in read_script_source(check.inputs["stdin"])
    assert "database-config-store-preflight" in deps(ev, "preflights-passed")


def test_without_replicas_or_stored_config_nothing_changes(lab: Program) -> None:
    plain = lab
    assert not [r.name for r in plain.resources if r.name.startswith("database-replica") or r.name == "database-config-store-preflight"]
    env = env_of(plain, "mm1")
    assert not {"MM_CONFIG", "MM_SQLSETTINGS_DATASOURCEREPLICAS", "MM_SQLSETTINGS_DATASOURCESEARCHREPLICAS"} & set(env)


@pytest.mark.parametrize(
    ("change", "key", "text"),
    [
        (lambda c: (c["database"].update(engine="mysql", host="mariadb"), c.update(mattermost={"version": "10.11.3"})), "database.replicas", "postgres only"),
        (lambda c: c["database"]["replicas"][0].update(address="10.251.0.21"), "database.replicas[0].address", "is the primary database or a node"),
        (lambda c: c["database"]["replicas"].append(dict(c["database"]["replicas"][0])), "database.replicas[1].address", "listed twice"),
        (lambda c: (c["database"]["replicas"][0]["ssh"].pop("hostKey"), c["database"]["replicas"][0].pop("host")), "database.replicas[0].ssh.hostKey", "pin the host's SSH host key"),
        (lambda c: (c.pop("dbPassword"), c["nodes"][0].update(configStore="database")), "dbPassword", "cannot be read from its files"),
    ],
)
def test_bad_replica_config_stops_the_preview_naming_the_key(
    config: dict[str, Any], change: Any, key: str, text: str
) -> None:
    cfg = copy.deepcopy(config)
    change(cfg)
    ev = run_stack("lab", cfg)
    assert ev.program_error, "the program stops"
    assert [r for r in ev.resources if r.custom] == [], "no resource before the config is valid"
    assert key in ev.program_error and text in ev.program_error, ev.program_error


def test_the_committed_replica_lab_stack_builds_the_same_graph(program: Any, lab_config: dict[str, Any]) -> None:
    ev = program(lab_config, stack="lab-replicas")
    assert not ev.program_error, ev.program_error
    assert {LABEL, f"{LABEL}-enforce-tls", "database-config-store-preflight"} <= {r.name for r in ev.resources}
    assert ev.get(f"{LABEL}-server-tls").inputs["connection"]["host"] == REPLICA
    assert "MM_CONFIG" in env_of(ev, "mm2") and "MM_CONFIG" not in env_of(ev, "mm1")

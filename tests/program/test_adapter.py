"""components/adapter.py: each narrowed component's args carry exactly what the config says, each
value from its key (a key that reaches the wrong field, or none, fails here), secrets as secret
Outputs (resolved under Pulumi's mock runtime, hence here and not in tests/unit); and the narrowed
components never see the whole StackConfig (they do not import it). The resource graph they build
from these args: test_database, test_live_site_gate, test_db_replicas, test_urns."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components import adapter
from components.cluster_render import ClusterNode
from components.config import StackConfig, parse
from components.nginx_render import Backend
from components.node_render import node_paths
from components.platform import DEBIAN
from components.ssh_keys import compact_private_key
from tests.helpers.certs import self_signed
from tests.helpers.pulumi_mocks import ProviderMocks, start
from tests.helpers.stack_config import HOSTKEY, good

ROOT = Path(__file__).resolve().parents[2]
PKI: Any = object()
"""The adapter hands the Pki on as it is: a stand-in shows it is the same object."""

NARROWED = (
    "gitlab", "teleport", "nginx", "nginx_site", "database", "database_enforcement", "database_accounts", "db_replicas", "node",
    "cluster", "cluster_render", "ca_switch",
)
"""The components whose args components/adapter.py builds (and their helper modules)."""


def config(**over: Any) -> StackConfig:
    d = good()
    for key, value in over.items():
        d[key] = {**d[key], **value} if isinstance(value, dict) and isinstance(d.get(key), dict) else value
    return parse(d)


def resolved(build: Callable[[], Any], *outputs: Callable[[Any], pulumi.Output[Any] | None]) -> tuple[Any, list[Any]]:
    """The args `build` returns (under Pulumi's mock runtime) and, for each of `outputs`, (value,
    secret) of that Output, or None."""
    start(ProviderMocks())
    got: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        args = got["args"] = build()
        picked = [pick(args) for pick in outputs]
        pairs = [
            pulumi.Output.from_input(None)
            if out is None
            else pulumi.Output.all(out, pulumi.Output.from_input(out.is_secret())).apply(tuple)
            for out in picked
        ]
        return pulumi.Output.all(*pairs).apply(lambda vs: got.update(values=list(vs)))

    program()
    return got["args"], got["values"]


def test_proxy_args_take_the_proxy_section_nodes_port_and_upstream_name() -> None:
    cfg = config(
        mattermost={"port": 8443, "upstreamName": "mm-app.example.internal"},
        proxy={"ssh": {"hostKey": HOSTKEY, "port": 2222, "address": "192.0.2.7"}},
        ssh={"user": "deploy"},
    )
    args, _ = resolved(lambda: adapter.proxy_args(cfg, PKI))
    assert args.proxy is cfg.proxy and args.pki is PKI
    assert args.backends == [Backend(n.address, 8443) for n in cfg.nodes]
    assert args.upstream_name == "mm-app.example.internal"
    assert (args.connection.host, args.connection.port, args.connection.user) == ("192.0.2.7", 2222, "deploy")
    assert args.tls_key is None


def test_proxy_args_carry_proxy_tls_key_as_a_secret() -> None:
    cert, key = self_signed(["chat.example.com"])
    cfg = config(proxy={"tls": {"source": "provided", "cert": cert}}, proxyTlsKey=key)
    _, [tls_key] = resolved(lambda: adapter.proxy_args(cfg, PKI), lambda a: a.tls_key)
    assert tls_key == (key.strip(), True)  # the config strips it; NginxProxy ends it with a newline


def test_database_args_take_the_database_section_clients_and_secrets() -> None:
    cfg = config(
        database={"adminUser": "dbadmin", "ssh": {"hostKey": HOSTKEY, "address": "192.0.2.9"}},
        dbPassword="nodes-pw",
        dbAdminPassword="admin-pw",
    )
    args, [password, admin] = resolved(
        lambda: adapter.database_args(cfg, PKI), lambda a: a.password, lambda a: a.admin_password
    )
    assert args.database is cfg.database and args.pki is PKI and args.preflight is None
    assert args.client_addresses == [n.address for n in cfg.nodes]
    assert args.connection.host == "192.0.2.9"
    assert password == ("nodes-pw", True) and admin == ("admin-pw", True)
    assert args.gitlab is None


def test_database_args_without_passwords_read_the_first_nodes_current_one() -> None:
    first = {"name": "mm1", "address": "10.10.250.146", "unit": "mm-server", "installDir": "/srv/mm", "ssh": {"hostKey": HOSTKEY}}
    cfg = config(nodes=[first, *good()["nodes"][1:]], mattermost={"tlsDir": "/etc/mm-tls"})
    args, [password, admin] = resolved(
        lambda: adapter.database_args(cfg, PKI), lambda a: a.password, lambda a: a.admin_password
    )
    assert password is None and admin is None
    source = args.site_password
    assert (source.node, source.unit, source.install_dir) == ("mm1", "mm-server", "/srv/mm")
    assert source.env_file.startswith("/etc/mm-tls/") and "mm-server" in source.env_file
    assert source.connection.host == "10.10.250.146"


@pytest.mark.parametrize(("external", "expected"), [(True, True), (False, False)])
def test_database_args_carry_gitlab_only_when_it_uses_this_postgres(external: bool, expected: bool) -> None:
    gitlab = {"enabled": True, "address": "10.10.250.150", "ssh": {"hostKey": HOSTKEY}, "externalPostgres": external}
    cfg = config(database={"engine": "postgres"}, gitlab=gitlab, dbPassword="pw")
    args, _ = resolved(lambda: adapter.database_args(cfg, PKI))
    assert (args.gitlab is cfg.gitlab) is expected and (args.gitlab is None) is not expected


def test_database_preflight_args_name_each_node_by_its_address() -> None:
    cfg = config()
    args, _ = resolved(lambda: adapter.database_preflight_args(cfg))
    assert args.database is cfg.database
    assert args.clients == {n.name: n.address for n in cfg.nodes}
    assert args.connection.host == cfg.database.address


def test_replica_args_one_per_distinct_server_with_its_own_connection() -> None:
    replica = {"address": "10.10.250.160", "host": "pgreplica", "ssh": {"hostKey": HOSTKEY}}
    search = [{"address": "10.10.250.161", "ssh": {"hostKey": HOSTKEY, "port": 2200}}, dict(replica)]
    cfg = config(database={"engine": "postgres", "replicas": [replica], "searchReplicas": search}, dbPassword="pw")
    args, _ = resolved(lambda: adapter.replica_args(cfg, PKI))
    assert [(a.server.label, a.connection.host, a.connection.port) for a in args] == [
        ("pgreplica", "10.10.250.160", 22),
        ("10-10-250-161", "10.10.250.161", 2200),
    ]
    assert all(a.database is cfg.database and a.pki is PKI for a in args)
    assert all(a.client_addresses == [n.address for n in cfg.nodes] for a in args)


def test_node_db_env_args_take_the_nodes_own_config_store_and_the_tls_dir() -> None:
    nodes = good()["nodes"]
    nodes[1] = {**nodes[1], "configStore": "database"}
    cfg = config(nodes=nodes, mattermost={"tlsDir": "/etc/mm-tls"}, dbPassword="pw")
    one, two = (adapter.node_db_env_args(cfg, n) for n in cfg.nodes[:2])
    assert (one.config_store, two.config_store) == ("file", "database")
    assert one.ca_file == two.ca_file == "/etc/mm-tls/ca.crt"
    assert one.database is cfg.database


def test_config_store_preflight_args_only_when_a_node_stores_its_config_in_the_database() -> None:
    assert adapter.config_store_preflight_args(config()) is None
    nodes = good()["nodes"]
    nodes[2] = {**nodes[2], "configStore": "database"}
    cfg = config(nodes=nodes, cluster={"enabled": True, "name": "c1"}, dbPassword="pw")
    args, _ = resolved(lambda: adapter.config_store_preflight_args(cfg))
    assert args is not None and args.database is cfg.database and args.cluster_enabled is True
    assert args.connection.host == cfg.database.address


def _own_node_config() -> StackConfig:
    """Three nodes: mm1 with every per-node setting of its own, mm2 with its own SSH, mm3 with the
    `mattermost` defaults (each default set, so a field read from the wrong place shows)."""
    nodes = good()["nodes"]
    nodes[0] = {
        **nodes[0],
        "unit": "mm-a",
        "installDir": "/srv/mm",
        "serviceGroup": "mmgrp",
        "version": "10.11.2",
        "configStore": "database",
    }
    nodes[1] = {**nodes[1], "ssh": {"hostKey": HOSTKEY, "port": 2222, "user": "deploy", "address": "192.0.2.44"}}
    mattermost = {
        "version": "10.10.0",
        "unit": "mmsrv",
        "installDir": "/opt/mm2",
        "serviceGroup": "mmg",
        "configStore": "file",
        "tlsDir": "/etc/mm-tls",
        "port": 8443,
        "upstreamName": "app.mm.internal",
        "startTimeoutSeconds": 300,
    }
    return config(nodes=nodes, mattermost=mattermost, database={"engine": "postgres"}, dbPassword="pw", ssh={"user": "ops"})


def test_node_settings_take_the_nodes_own_values_else_the_mattermost_defaults() -> None:
    cfg = _own_node_config()
    own, _, default = (adapter.node_settings(cfg, n) for n in cfg.nodes)
    shared = ("port", "tls_dir", "upstream_name", "start_timeout_seconds")
    assert (own.name, own.address, own.platform) == ("mm1", cfg.nodes[0].address, "debian")
    assert (own.unit, own.install_dir, own.service_group, own.version, own.config_store) == (
        "mm-a", "/srv/mm", "mmgrp", "10.11.2", "database"
    )
    assert (own.version_key, own.store_key) == ("nodes[0].version", "nodes[0].configStore")
    assert (default.name, default.address) == ("mm3", cfg.nodes[2].address)
    assert (default.unit, default.install_dir, default.service_group, default.version, default.config_store) == (
        "mmsrv", "/opt/mm2", "mmg", "10.10.0", "file"
    )
    assert (default.version_key, default.store_key) == ("mattermost.version", "mattermost.configStore")
    for s in (own, default):
        assert tuple(getattr(s, f) for f in shared) == (8443, "/etc/mm-tls", "app.mm.internal", 300)


def test_node_args_carry_the_nodes_settings_connection_and_whether_others_serve() -> None:
    cfg = _own_node_config()
    database: Any = object()
    before = pulumi.CustomResource("test:index:Before", "before", {})
    env = {"MM_X": "1"}
    args, [key] = resolved(
        lambda: adapter.node_args(cfg, cfg.nodes[1], PKI, database, extra_env=env, depends_on=[before], previous=before),
        lambda a: a.connection.private_key,
    )
    assert args.node == adapter.node_settings(cfg, cfg.nodes[1])
    assert (args.connection.host, args.connection.port, args.connection.user) == ("192.0.2.44", 2222, "deploy")
    assert args.connection.host_key == HOSTKEY
    assert key == (compact_private_key(cfg.ssh_private_key.get_secret_value().strip() + "\n"), True)
    assert args.pki is PKI and args.database is database and args.others_serve is True
    assert args.extra_env == env and args.depends_on == [before] and args.previous is before and args.preflight is None
    one = config(nodes=good()["nodes"][:1])
    alone, _ = resolved(lambda: adapter.node_args(one, one.nodes[0], PKI, database))
    assert alone.others_serve is False and (alone.connection.host, alone.connection.user) == (one.nodes[0].address, "root")


@pytest.mark.parametrize("cluster", [True, False])
def test_node_preflight_args_take_the_node_cluster_enabled_and_the_database_section(cluster: bool) -> None:
    cfg = _own_node_config().model_copy(update={"cluster": config(cluster={"enabled": cluster, "name": "c1"}).cluster})
    args, _ = resolved(lambda: adapter.node_preflight_args(cfg, cfg.nodes[0]))
    assert args.node == adapter.node_settings(cfg, cfg.nodes[0])
    assert args.cluster_enabled is cluster and args.database is cfg.database
    assert (args.connection.host, args.connection.port, args.connection.user) == (cfg.nodes[0].address, 22, "ops")


def test_node_connection_is_the_nodes_own() -> None:
    cfg = _own_node_config()
    conns, _ = resolved(lambda: [adapter.node_connection(cfg, n) for n in cfg.nodes])
    assert [(c.host, c.port, c.user) for c in conns] == [
        (cfg.nodes[0].address, 22, "ops"),
        ("192.0.2.44", 2222, "deploy"),
        (cfg.nodes[2].address, 22, "ops"),
    ]


def _cluster_config() -> StackConfig:
    """A cluster whose every per-node value the plan reads differs from its default somewhere:
    mm1 its own unit and tunnelSlot, mm2 its own SSH, mm3 the defaults (ssh.port 2200)."""
    nodes = good()["nodes"]
    nodes[0] = {**nodes[0], "unit": "mm-a", "tunnelSlot": 5}
    nodes[1] = {**nodes[1], "ssh": {"hostKey": HOSTKEY, "port": 2222, "user": "deploy", "address": "192.0.2.44"}}
    cluster = {"enabled": True, "name": "c-2", "gossipPort": 9074, "streamingPort": 9075, "tunnelPortBase": 30000, "tunnelUser": "tunnelx"}
    return config(nodes=nodes, mattermost={"unit": "mmsrv", "version": "10.10.0"}, ssh={"user": "ops", "port": 2200}, cluster=cluster)


def test_cluster_args_take_the_cluster_section_and_what_the_plan_reads_of_each_node() -> None:
    cfg = _cluster_config()
    args, [key] = resolved(lambda: adapter.cluster_args(cfg), lambda a: a.connections["mm2"].private_key)
    assert args.cluster is cfg.cluster
    a1, a2, a3 = (n.address for n in cfg.nodes)
    assert list(args.nodes) == [
        ClusterNode("mm1", 0, a1, 2200, HOSTKEY, "mm-a", "10.10.0", 5),
        ClusterNode("mm2", 1, a2, 2222, HOSTKEY, "mmsrv", "10.10.0", None),
        ClusterNode("mm3", 2, a3, 2200, HOSTKEY, "mmsrv", "10.10.0", None),
    ]
    assert {n: (c.host, c.port, c.user, c.host_key) for n, c in args.connections.items()} == {
        "mm1": (a1, 2200, "ops", HOSTKEY),
        "mm2": ("192.0.2.44", 2222, "deploy", HOSTKEY),
        "mm3": (a3, 2200, "ops", HOSTKEY),
    }
    assert key == (compact_private_key(cfg.ssh_private_key.get_secret_value().strip() + "\n"), True)
    assert args.platforms == {"mm1": DEBIAN, "mm2": DEBIAN, "mm3": DEBIAN}
    plan = adapter.cluster_plan(cfg)
    assert [(m.name, m.ssh_port, m.unit, m.version, m.slot_source) for m in plan.members] == [
        ("mm1", 2200, "mm-a", (10, 10, 0), "tunnelSlot"),
        ("mm2", 2222, "mmsrv", (10, 10, 0), "address"),
        ("mm3", 2200, "mmsrv", (10, 10, 0), "address"),
    ]
    assert (plan.name, plan.ports, plan.port_base, plan.tunnel_user) == ("c-2", (9074, 9075), 30000, "tunnelx")


def test_cluster_nodes_outside_the_config_are_named_by_their_place_in_the_list() -> None:
    cfg = _cluster_config()
    extra = cfg.nodes[0].model_copy(update={"name": "mm9", "tunnel_slot": None})
    got = adapter.cluster_nodes(cfg, [cfg.nodes[2], extra])
    assert [(n.name, n.index, n.unit, n.tunnel_slot) for n in got] == [("mm3", 2, "mmsrv", None), ("mm9", 1, "mm-a", None)]


@pytest.mark.parametrize("rotation", [None, "stage"])
def test_ca_switch_args_are_none_outside_switch(rotation: str | None) -> None:
    assert adapter.ca_switch_args(config(ca={"rotation": rotation}), PKI) is None


def test_ca_switch_args_carry_the_issuing_generation_and_every_trust_host() -> None:
    tp = {"enabled": True, "address": "10.10.250.151", "caDir": "/etc/tca", "ssh": {"hostKey": HOSTKEY, "port": 2202, "address": "192.0.2.51"}}
    cfg = config(
        ca={"generation": 3, "rotation": "switch"},
        nodes=good()["nodes"][:2],
        mattermost={"tlsDir": "/etc/mm-tls", "unit": "mmsrv"},
        proxy={"tlsDir": "/etc/nginx/mmtls"},
        database={"engine": "postgres", "tlsDir": "/var/lib/pgtls", "replicas": [{"address": "10.10.250.160", "ssh": {"hostKey": HOSTKEY, "user": "pgops"}}]},
        gitlab={"enabled": True, "address": "10.10.250.150", "caFile": "/etc/gitlab/trusted-certs/x.crt", "ssh": {"hostKey": HOSTKEY}},
        teleport=tp,
        teleportToken="bot-token-abcdefghijklmnop",
        dbPassword="pw",
    )
    args, _ = resolved(lambda: adapter.ca_switch_args(cfg, PKI))
    assert args.generation == 4 and args.pki is PKI
    got = {h.label: (h.connection.host, h.connection.port, h.connection.user, h.files) for h in args.hosts}
    rep = "database-replica-10-10-250-160"
    assert list(got) == ["mm1", "mm2", "proxy", "database", rep, "gitlab", "teleport"]
    paths = node_paths("/etc/mm-tls", "mmsrv")  # where MattermostNode installs the bundle
    assert got["mm1"] == (cfg.nodes[0].address, 22, "root", (paths.ca, paths.system_ca))
    assert got["proxy"] == (cfg.proxy.address, 22, "root", ("/etc/nginx/mmtls/ca.crt",))
    assert got["database"][3] == got[rep][3] == ("/var/lib/pgtls/ca.crt",)
    assert got[rep][:3] == ("10.10.250.160", 22, "pgops")
    assert got["gitlab"][3] == ("/etc/gitlab/trusted-certs/x.crt",)
    assert got["teleport"][:3] == ("192.0.2.51", 2202, "root") and got["teleport"][3][0].startswith("/etc/tca/")


def _names_used(module: str) -> set[str]:
    tree = ast.parse((ROOT / "components" / f"{module}.py").read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return names


@pytest.mark.parametrize("module", NARROWED)
def test_a_narrowed_component_never_sees_the_stack_config(module: str) -> None:
    used = _names_used(module)
    assert "StackConfig" not in used and "connection_for" not in used, module


def test_the_probe_sees_the_stack_config_where_it_is_used() -> None:
    assert {"StackConfig", "connection_for"} <= _names_used("adapter")

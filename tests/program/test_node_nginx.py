"""MattermostNode and NginxProxy under Pulumi's mock runtime: what they register, what depends on
what, what is secret, and that adding a node renames nothing.

The recording monitor of tests/helpers/pulumi_mocks.py keeps every RegisterResource request
(parent, dependencies, options and the raw inputs with their secret markers), which the stock
mock throws away. TLS resources get
real keys and certificates so the components' own applies (fingerprint) run on real data.
"""

from __future__ import annotations

import base64
import urllib.parse
from dataclasses import dataclass
from typing import Any

import pulumi
import pytest

from components import config as config_mod
from components.host_helper_render import HELPER_PATH
from components.node_render import cert_fingerprint_sha256
from components.remote_files_render import read_manifest, stdin_contents
from tests.helpers import certs
from tests.helpers.nginx import guide_capture
from tests.helpers.pulumi_mocks import ProviderMocks, RecordingMonitor, Registration, runs, start, unwrap
from tests.helpers.stack_config import HOST_KEYS, lab_like

DB_PASSWORD = "s3cr3t&p@ss?=%"
PROVIDED_KEY_MARKER = "PROVIDED-KEY-MATERIAL"


def make_cfg(nodes: list[str], **overrides: Any) -> config_mod.StackConfig:
    """The lab-like stack with the site's password given (its other source is a read at apply time)."""
    return lab_like(nodes, **{"dbPassword": DB_PASSWORD, **overrides})


# ---------------------------------------------------------------- mocks


class Mocks(ProviderMocks):
    """Real keys and certificates, so the components' own applies (fingerprints) run on real data."""

    def __init__(self, stdout: dict[str, str] | None = None) -> None:
        super().__init__(stdout)
        self.certs: dict[str, str] = {}

    def private_key_pem(self, name: str) -> str:
        return certs.key_pem()

    def other(self, args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
        if args.typ in ("random:index/randomString:RandomString", "random:index/randomPassword:RandomPassword"):
            return {"result": "r" * int(args.inputs.get("length", 16))}  # the database's owner tokens
        return {}

    def cert_pem(self, name: str) -> str:
        return self.certs.setdefault(name, certs.self_signed([name])[0])


class FakeDatabase:
    """What a node needs from components.database.Database (written by another engineer)."""

    driver_name = "postgres"

    def __init__(self) -> None:
        self.ready = [pulumi.CustomResource("test:index:DatabaseReady", "database-ready", {})]

    def dsn(self, ca_file: str) -> pulumi.Output[str]:
        pw = urllib.parse.quote(DB_PASSWORD, safe="")
        return pulumi.Output.secret(
            f"postgres://mmuser:{pw}@10.251.0.21:5432/mattermost?sslmode=verify-full&sslrootcert={ca_file}&connect_timeout=10"
        )


@dataclass
class Run:
    monitor: RecordingMonitor
    mocks: Mocks
    outputs: dict[str, Any]

    def by_name(self, name: str) -> Registration:
        return self.monitor.by_name(name)

    def urns(self) -> set[str]:
        # the root Stack is registered once per process, not once per run
        return {r.urn for r in self.monitor.registrations if r.type != "pulumi:pulumi:Stack"}


def _start(stdout: dict[str, str] | None) -> Run:
    mocks = Mocks(stdout)
    return Run(start(mocks), mocks, {})


def run_node(cfg: config_mod.StackConfig, extra_env: dict[str, Any]) -> Run:
    """One MattermostNode alone (the stack CA, a stand-in database), given `extra_env`."""
    from components import adapter
    from components.node import MattermostNode
    from components.pki import Pki, PkiArgs

    run = _start(None)

    @pulumi.runtime.test
    def program() -> None:
        pki = Pki("pki", PkiArgs(ca=cfg.ca))
        node = cfg.nodes[0]
        args = adapter.node_args(cfg, node, pki, FakeDatabase(), extra_env=extra_env)
        run.outputs["node"] = MattermostNode(node.name, args)

    program()
    return run


def run_program(cfg: config_mod.StackConfig, stdout: dict[str, str] | None = None) -> Run:
    """The whole program's graph for `cfg`, built by the Deployment in its rollout order."""
    from components.deployment import Deployment

    run = _start(stdout)
    outputs = run.outputs

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        # the real rollout order (components/deployment.py), not a copy of it
        deployment = Deployment(cfg)
        nodes = deployment.nodes
        outputs["nodes"] = nodes
        outputs["proxy"] = deployment.proxy
        outputs["final_site"] = deployment.final_site
        return pulumi.Output.all(
            *[n.cert_fingerprint_sha256 for n in nodes], *[n.cert_expiry for n in nodes]
        ).apply(lambda vals: outputs.__setitem__("node_values", vals))

    program()
    return run


# ---------------------------------------------------------------- node


@pytest.fixture(scope="module")
def two() -> Run:
    return run_program(make_cfg(["mm1", "mm2"]))


def test_node_files_command_is_secret_and_keeps_secrets_out_of_its_text(two: Run) -> None:
    cmd = two.by_name("mm1-tls-files")
    assert cmd.type == "command:remote:Command"
    assert cmd.parent.endswith("mattermost-tls:node:MattermostNode::mm1")
    stdin, secret = unwrap(cmd.inputs["stdin"])
    assert secret, "stdin carries the key and the DSN"
    assert set(cmd.additional_secret_outputs) >= {"stdout", "stderr"}
    assert cmd.inputs["logging"] == "none"
    files = stdin_contents(stdin)
    assert len(files) == 4
    cert, key, env, dropin = files
    # the CA the DSN verifies with (file and system trust) is its own command, created before this
    # one and so deleted after it: a destroy restarts the node onto its original DSN before the
    # CA goes (components/node.py)
    db_ca = two.by_name("mm1-db-ca")
    ca, system_ca = stdin_contents(unwrap(db_ca.inputs["stdin"])[0])
    assert db_ca.urn in cmd.dependencies and "/etc/mattermost-tls/ca.crt" in runs(db_ca, "create")
    assert "update-ca-certificates" in runs(db_ca, "create") and "update-ca-certificates" in runs(db_ca, "delete")
    assert "/usr/local/share/ca-certificates/mattermost-transport-ca.crt" in runs(db_ca, "create")
    assert "PRIVATE KEY" in key and "CERTIFICATE" in cert and ca == system_ca
    assert "MM_SERVICESETTINGS_CONNECTIONSECURITY=\"TLS\"" in env
    assert 'MM_SERVICESETTINGS_TLSCERTFILE="/etc/mattermost-tls/node.crt"' in env
    assert 'MM_SERVICESETTINGS_TLSKEYFILE="/etc/mattermost-tls/node.key"' in env
    assert 'MM_SERVICESETTINGS_TLSMINVER="1.2"' in env
    assert 'MM_SQLSETTINGS_DRIVERNAME="postgres"' in env
    assert "sslrootcert=/etc/mattermost-tls/ca.crt" in env and "%26" in env
    assert dropin.endswith("EnvironmentFile=/etc/mattermost-tls/mattermost.env\n")
    assert "update" not in cmd.inputs, "an update runs `create`"
    for field in ("create", "delete"):
        text = cmd.inputs[field]
        assert isinstance(text, str), f"{field} must be plain text"
        assert "PRIVATE KEY" not in text and "sslrootcert" not in text and "mmuser:" not in text
        assert base64.b64encode(key.encode()).decode()[:40] not in text
    create, delete = runs(cmd, "create"), runs(cmd, "delete")
    assert "file 0640 root:mattermost" in create
    assert "file 0600 root:root" in create
    assert "/etc/systemd/system/mattermost.service.d/50-transport-encryption.conf" in create
    assert "--resolve mattermost-app.internal:8065:127.0.0.1" in create or "mattermost-app.internal:8065:127.0.0.1" in create
    # delete never fails on the node's start, but waits (bounded) for a NEW process to answer, so
    # a destroy restarts the nodes one after another (node_render.render_restore_activate_script)
    assert "systemctl restart --no-block" in delete and "MainPID" in delete
    assert "not answer on port 8065 120 s after its restart; not waiting longer" in delete


def test_node_waits_for_the_database_and_owns_its_certificate(two: Run) -> None:
    cmd = two.by_name("mm1-tls-files")
    # through its CA file, which the restart waits for (listed once: see the test above)
    for ready in ("database-server-tls", "database-pg-hba", "database-db-user-mmuser"):  # the Database's phase 1
        assert two.by_name(ready).urn in two.by_name("mm1-db-ca").dependencies, ready
    assert two.by_name("mm1-db-ca").urn in cmd.dependencies
    csr = two.by_name("mm1-server-csr")
    assert csr.inputs["dnsNames"] == ["mm1", "mattermost-app.internal"]
    assert csr.inputs["ipAddresses"] == ["10.251.0.101"]
    for suffix in ("key", "csr", "cert"):
        assert two.by_name(f"mm1-server-{suffix}").parent.endswith("mattermost-tls:node:MattermostNode::mm1")


def test_node_outputs(two: Run) -> None:
    nodes = two.outputs["nodes"]
    fps = two.outputs["node_values"][: len(nodes)]
    expiries = two.outputs["node_values"][len(nodes) :]
    for node, fp in zip(nodes, fps, strict=True):
        assert fp == cert_fingerprint_sha256(two.mocks.certs[f"{node.node_name}-server-cert"])
    assert expiries == ["2030-01-01T00:00:00Z"] * len(nodes)
    mm1 = nodes[0]
    assert mm1.installed == {
        "cert": "/etc/mattermost-tls/node.crt",
        "key": "/etc/mattermost-tls/node.key",
        "ca": "/etc/mattermost-tls/ca.crt",
        "systemCa": "/usr/local/share/ca-certificates/mattermost-transport-ca.crt",
        "env": "/etc/mattermost-tls/mattermost.env",
        "dropin": "/etc/systemd/system/mattermost.service.d/50-transport-encryption.conf",
    }
    assert (mm1.node_name, mm1.address, mm1.port, mm1.ca_file) == ("mm1", "10.251.0.101", 8065, "/etc/mattermost-tls/ca.crt")
    assert isinstance(mm1.ready, pulumi.Resource)


# ---------------------------------------------------------------- proxy


def test_transitional_site_comes_first_and_nodes_switch_one_at_a_time(two: Run) -> None:
    transition = two.by_name("proxy-transition")
    assert transition.parent.endswith("mattermost-tls:nginx:NginxProxy::proxy")
    # it waits for no host, only for the read-only capture of the live NGINX configuration (and
    # the proxy's host helper, which every command on that host needs)
    waits = [d for d in transition.dependencies if "command:remote:Command" in d and "host-helper-" not in d]
    assert waits == [two.by_name("proxy-live-site").urn], waits
    assert transition.urn in two.by_name("mm1-tls-files").dependencies
    assert two.by_name("mm1-tls-files").urn in two.by_name("mm2-tls-files").dependencies


def test_transitional_site_is_guarded_secret_and_restores_like_the_final_one(two: Run) -> None:
    cmd = two.by_name("proxy-transition")
    stdin, secret = unwrap(cmd.inputs["stdin"])
    assert secret, "stdin carries the public key"
    assert set(cmd.additional_secret_outputs) >= {"stdout", "stderr"} and cmd.inputs["logging"] == "none"
    cert, key, ca, site = stdin_contents(stdin)
    final_cert, final_key, final_ca, _ = stdin_contents(unwrap(two.by_name("proxy-site").inputs["stdin"])[0])[:4]
    assert (cert, key, ca) == (final_cert, final_key, final_ca), "the same browser certificate and CA as the final site"
    assert "proxy_pass http://backend_plain;" in site and site.count("proxy_ssl_verify on;") == 4
    assert "server 10.251.0.101:8065 max_fails=0;" in site and "server 10.251.0.102:8065;" in site
    create = runs(cmd, "create")
    assert cmd.inputs["update"].replace("run-update", "run-create") == cmd.inputs["create"]
    assert "PRIVATE KEY" not in create and base64.b64encode(key.encode()).decode()[:40] not in create
    # the guard comes before anything is installed
    assert create.index("proxy_pass[[:space:]]+http://") < create.index("helper-v1 files-apply proxy-transition")
    assert "owner proxy-transition" in create and "nginx -t" in create
    assert "answers through the transitional site" in create
    assert "nginx -t && systemctl reload nginx" in runs(cmd, "delete")
    assert "owner proxy-transition" in runs(cmd, "delete")


def test_proxy_site_verifies_the_nodes(two: Run) -> None:
    cmd = two.by_name("proxy-site")
    stdin, secret = unwrap(cmd.inputs["stdin"])
    assert secret, "stdin carries the public key"
    # the final files, then the transitional ones its delete hands back (the rollout backwards)
    cert, key, ca, site, *handback = stdin_contents(stdin)
    assert handback == stdin_contents(unwrap(two.by_name("proxy-transition").inputs["stdin"])[0])
    assert "PRIVATE KEY" in key and "PRIVATE KEY" not in runs(cmd, "create")
    assert site.count("proxy_ssl_verify on;") == 2
    assert site.count("proxy_pass https://backend;") == 2 and "http://backend" not in site
    assert "proxy_ssl_name mattermost-app.internal;" in site
    assert "proxy_ssl_trusted_certificate /etc/nginx/mattermost-tls/ca.crt;" in site
    # never marked down while it restarts (nginx_render.render_nginx_site)
    assert "server 10.251.0.101:8065 max_fails=0;" in site and "server 10.251.0.102:8065 max_fails=0;" in site
    assert "server_name chat.example.com;" in site
    assert "nginx -t" in runs(cmd, "create") and "head -n 4;" in runs(cmd, "create")
    # destroy: NGINX keeps verified TLS (with the per-request plain fallback) until the nodes went
    # back to plain; the transition's delete, after them, restores the original site
    delete = runs(cmd, "delete")
    assert "tail -n +5;" in delete and "files-apply proxy-transition" in delete and "owner proxy-transition" in delete
    assert "answers through the transitional site" in delete and "files-restore" not in delete
    assert two.by_name("proxy-transition").urn in cmd.dependencies
    csr = two.by_name("proxy-public-csr")
    assert csr.inputs["dnsNames"] == ["chat.example.com"] and csr.inputs["ipAddresses"] == ["10.251.0.10"]
    proxy = two.outputs["proxy"]
    assert (proxy.url, proxy.site_file, proxy.upstream_name) == (
        "https://chat.example.com/", "/etc/nginx/conf.d/mattermost.conf", "mattermost-app.internal",
    )


def test_provided_public_certificate(tmp_path: Any) -> None:
    cert, _ = certs.self_signed(["chat.example.com"])
    cfg = make_cfg(
        ["mm1"], proxy={"address": "10.251.0.10", "ssh": {"hostKey": HOST_KEYS["proxy"]},
                        "serverName": "chat.example.com", "tls": {"source": "provided", "cert": cert}},
        proxyTlsKey=PROVIDED_KEY_MARKER,
    )
    run = run_program(cfg)
    assert not [r for r in run.monitor.registrations if r.name.startswith("proxy-public")]
    cmd = run.by_name("proxy-site")
    stdin, secret = unwrap(cmd.inputs["stdin"])
    assert secret
    got_cert, got_key, _, _, *_ = stdin_contents(stdin)
    assert got_cert == cert.strip() + "\n" and got_key == PROVIDED_KEY_MARKER + "\n"
    assert PROVIDED_KEY_MARKER not in str(runs(cmd, "create")) + str(runs(cmd, "delete"))
    assert "--insecure" in runs(cmd, "create"), "the provided cert's issuer may be unknown to the proxy host"


# ---------------------------------------------------------------- stability and overrides


def _stable_view(run: Run, prefix: str) -> dict[str, Any]:
    return {
        r.urn: {k: v for k, v in r.inputs.items() if k in ("create", "update", "delete", "dnsNames", "ipAddresses")}
        for r in run.monitor.registrations
        if r.name.startswith(prefix)
    }


def test_adding_a_node_renames_and_changes_nothing_of_the_others(two: Run) -> None:
    three = run_program(make_cfg(["mm1", "mm2", "mm3"]))
    assert two.urns() <= three.urns()
    assert {u for u in three.urns() - two.urns()} == {r.urn for r in three.monitor.registrations if "mm3" in r.name or r.name in ("host-helper-10.251.0.103", "host-helper-10.251.0.103-upload", "host-helper-10.251.0.103-copy")}
    for n in ("mm1", "mm2"):
        assert _stable_view(two, n) == _stable_view(three, n)
    # the proxy's scripts are the same; only its site contents (stdin) gain mm3
    assert _stable_view(two, "proxy-site") == _stable_view(three, "proxy-site")
    assert _stable_view(two, "proxy-transition") == _stable_view(three, "proxy-transition")
    site = stdin_contents(unwrap(three.by_name("proxy-site").inputs["stdin"])[0])[3]
    assert "server 10.251.0.103:8065 max_fails=0;" in site
    transitional = stdin_contents(unwrap(three.by_name("proxy-transition").inputs["stdin"])[0])[3]
    assert "server 10.251.0.103:8065 max_fails=0;" in transitional and "server 10.251.0.103:8065;" in transitional
    # the new node restarts after the last of the others
    assert three.by_name("mm2-tls-files").urn in three.by_name("mm3-tls-files").dependencies


def test_the_final_site_is_installed_once() -> None:
    run = run_program(make_cfg(["mm1"]))
    with pytest.raises(RuntimeError, match="already called"):
        run.outputs["proxy"].install_final_site(run.outputs["nodes"], parent=run.outputs["final_site"])


def test_proxy_reloads_only_after_every_node_is_ready_through_the_last_one(three_run: Run) -> None:
    """One edge to the last node's `ready` (the rollout is serial), not one per node: each edge
    costs the SDK's cycle check a walk of the whole rollout. Every node is still upstream of the
    site, so an `up` installs it after every node and a destroy deletes it before any node."""
    run = three_run
    by_urn = {r.urn: r for r in run.monitor.registrations}
    site = run.by_name("proxy-site")
    # its own component's child, which is the proxy's (components/nginx_site.py)
    assert site.parent == run.by_name("proxy-final-site").urn
    assert run.by_name("proxy-final-site").parent == run.by_name("proxy").urn
    ready = {run.by_name(f"mm{i}-tls-files").urn for i in (1, 2, 3)}
    assert ready & set(site.dependencies) == {run.by_name("mm3-tls-files").urn}
    # deleted before the transition on destroy: it is the one that restores the original site
    assert run.by_name("proxy-transition").urn in site.dependencies
    seen: set[str] = set()
    todo = list(site.dependencies)
    while todo:
        urn = todo.pop()
        if urn not in seen and urn in by_urn:
            seen.add(urn)
            todo.extend(by_urn[urn].dependencies)
    assert ready <= seen


@pytest.fixture(scope="module")
def three_run() -> Run:
    return run_program(make_cfg(["mm1", "mm2", "mm3"]))


def test_only_the_restart_waits_for_the_node_before_and_lists_nothing_its_ca_file_waits_for(three_run: Run) -> None:
    """A node's CA file (`<node>-db-ca`) goes on as soon as the database is ready, in parallel on
    every node (nothing reads it before the node's own restart); the restart (`<node>-tls-files`)
    waits for its CA file and the node before, and lists nothing the CA file already waits for:
    each listed dependency costs the SDK's cycle check a walk of its whole upstream, and a serial
    chain of one command per node instead of two halves the SDK's rounds."""
    run = three_run
    db_ready = run.by_name("database-server-tls").urn  # the Database's phase 1 (one of its ready)
    for i, previous in ((1, "proxy-transition"), (2, "mm1-tls-files"), (3, "mm2-tls-files")):
        db_ca, files = run.by_name(f"mm{i}-db-ca"), run.by_name(f"mm{i}-tls-files")
        assert {db_ca.urn, run.by_name(previous).urn} <= set(files.dependencies), i
        assert db_ready in db_ca.dependencies and db_ready not in files.dependencies, i
        assert run.by_name(previous).urn not in db_ca.dependencies, i
        assert not {d for d in db_ca.dependencies if d.endswith(("-tls-files", "-transition"))}, i


def test_final_site_refuses_nodes_that_do_not_roll_out_one_after_another() -> None:
    run = run_program(make_cfg(["mm1", "mm2"]))
    mm1, mm2 = run.outputs["nodes"]
    with pytest.raises(ValueError, match="mm1 does not wait for mm2's ready"):
        run.outputs["proxy"].install_final_site([mm2, mm1], parent=run.outputs["final_site"])


def test_no_duplicate_urns(two: Run) -> None:
    urns = [r.urn for r in two.monitor.registrations]
    assert len(urns) == len(set(urns))


def test_per_node_overrides() -> None:
    cfg = make_cfg(["mm1"])
    node = cfg.nodes[0].model_copy(update={"unit": "mm-chat", "service_group": "chat"})
    cfg = cfg.model_copy(update={"nodes": [node]})
    run = run_program(cfg)
    cmd = run.by_name("mm1-tls-files")
    create = runs(cmd, "create")
    assert "file 0640 root:chat" in create
    assert "/etc/systemd/system/mm-chat.service.d/50-transport-encryption.conf" in create
    assert "unit=mm-chat.service" in create
    env = stdin_contents(unwrap(cmd.inputs["stdin"])[0])[2]
    assert stdin_contents(unwrap(cmd.inputs["stdin"])[0])[3].endswith("EnvironmentFile=/etc/mattermost-tls/mm-chat.env\n")
    assert "MM_SERVICESETTINGS_CONNECTIONSECURITY" in env


def test_extra_env_goes_into_the_same_secret_file() -> None:
    run = run_node(
        make_cfg(["mm1"]),
        extra_env={"MM_CLUSTERSETTINGS_ENABLE": "true", "MM_CLUSTERSETTINGS_GOSSIPPORT": pulumi.Output.from_input("8074")},
    )
    env = stdin_contents(unwrap(run.by_name("mm1-tls-files").inputs["stdin"])[0])[2]
    assert 'MM_CLUSTERSETTINGS_ENABLE="true"' in env and 'MM_CLUSTERSETTINGS_GOSSIPPORT="8074"' in env


def test_extra_env_may_not_override_tls_settings() -> None:
    with pytest.raises(Exception, match="must not override"):
        run_node(make_cfg(["mm1"]), extra_env={"MM_SERVICESETTINGS_CONNECTIONSECURITY": ""})


# ---------------------------------------------------------------- the admin's live site (nginx_live)


def test_the_admins_https_site_keeps_its_certificate_and_gets_verification() -> None:
    from lab import seeding

    proxy = {"address": "10.251.0.10", "ssh": {"hostKey": HOST_KEYS["proxy"]}, "siteFile": seeding.GUIDE_SITE}
    cfg = make_cfg(["mm1", "mm2"], proxy=proxy)
    capture = guide_capture("/etc/nginx/sites-enabled/mattermost", seeding.GUIDE_SITE)
    run = run_program(cfg, stdout={"proxy-live-site": capture})
    live = run.by_name("proxy-live-site")
    assert {"stdout", "stderr"} <= set(live.additional_secret_outputs), "nginx -T may print credentials"
    assert "nginx -T" in runs(live, "create") and "delete" not in live.inputs
    *_, transitional = stdin_contents(unwrap(run.by_name("proxy-transition").inputs["stdin"])[0])
    final = stdin_contents(unwrap(run.by_name("proxy-site").inputs["stdin"])[0])[3]
    cert, _ = seeding.guide_cert_paths("mattermost.lab.internal")
    for site in (transitional, final):
        assert f"ssl_certificate {cert};" in site and "listen [::]:443 ssl http2;" in site
        assert "client_max_body_size 100M;" in site and "proxy_cache mattermost_cache;" in site
    assert final.count("proxy_ssl_verify on;") == 2 and "proxy_pass http://" not in final
    assert "proxy_pass http://backend_mmtls_plain;" in transitional


def test_the_nginx_transition_calls_the_installed_helper_not_a_copy() -> None:
    """The transition's guarded apply and its restore call the host helper installed once per host
    (components/host_helper.py) instead of carrying a copy of its functions; update is create,
    sent once."""
    from lab import seeding

    proxy = {"address": "10.251.0.10", "ssh": {"hostKey": HOST_KEYS["proxy"]}, "siteFile": seeding.GUIDE_SITE}
    run = run_program(make_cfg(["mm1", "mm2"], proxy=proxy), stdout={
        "proxy-live-site": guide_capture("/etc/nginx/sites-enabled/mattermost", seeding.GUIDE_SITE)
    })
    m = read_manifest(unwrap(run.by_name("proxy-transition").inputs["stdin"])[0])
    assert HELPER_PATH in m.sections["create"] and HELPER_PATH in m.sections["delete"]
    assert "mtm_keep_original" not in m.sections["create"] + m.sections["delete"]
    assert "update" not in m.sections, "update is create: sent once"


def test_the_transitions_delete_drains_a_plain_site_before_its_original_returns() -> None:
    """A live site that served browsers over plain HTTP got a redirect to 443 in the transition;
    the transition's delete first makes port 80 proxy as the original did (443 still answering),
    then restores the original (tests/unit/test_nginx_drain.py runs the drain)."""
    from lab import seeding

    proxy = {"address": "10.251.0.10", "ssh": {"hostKey": HOST_KEYS["proxy"]}, "siteFile": seeding.GUIDE_SITE}
    plain = guide_capture("/etc/nginx/sites-enabled/mattermost", seeding.GUIDE_SITE).replace(
        seeding.render_guide_site(["10.251.0.101", "10.251.0.102"], "mattermost.lab.internal"),
        seeding.render_nginx_site(["10.251.0.101", "10.251.0.102"]),
    )
    run = run_program(make_cfg(["mm1", "mm2"], proxy=proxy), stdout={"proxy-live-site": plain})
    delete = runs(run.by_name("proxy-transition"), "delete")
    assert "proxy_pass http://backend;" in delete and "seconds=1" in delete
    assert delete.index("mtm-drain") < delete.index("files-restore proxy-transition")
    # the admin's HTTPS site (no redirect was added): the delete only restores
    guide = run_program(
        make_cfg(["mm1", "mm2"], proxy=proxy),
        stdout={"proxy-live-site": guide_capture("/etc/nginx/sites-enabled/mattermost", seeding.GUIDE_SITE)},
    )
    assert "mtm-drain" not in runs(guide.by_name("proxy-transition"), "delete")

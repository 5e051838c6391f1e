"""The host platform seam (components/platform.py): Debian's description holds the values the
renderers used before it existed, every renderer reads them from the Platform it is given (a
second family changes exactly its own lines), and a host naming an unknown family is refused."""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

import pytest

from components import adapter, cluster_render, database_render, db_replicas_render, node_render, teleport_render
from components.config import StackConfig, parse
from components.platform import DEBIAN, PLATFORMS, platform_for
from tests.helpers.platform import FAKE
from tests.helpers.stack_config import good


def changed(before: str, after: str) -> list[tuple[str, str]]:
    """(old line, new line) for every line that differs; both texts must have the same lines."""
    a, b = before.splitlines(), after.splitlines()
    assert len(a) == len(b), "\n".join(difflib.unified_diff(a, b, lineterm=""))
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


# ---------------------------------------------------------------- the Debian description


def test_debian_holds_the_values_the_renderers_used_before() -> None:
    d = DEBIAN
    assert (d.name, d.label) == ("debian", "Debian")
    assert (d.system_ca_dir, d.system_ca_suffix, d.trust_update) == (
        "/usr/local/share/ca-certificates", ".crt", "update-ca-certificates",
    )
    assert (d.system_cert_dir, d.trust_link_suffix, d.system_bundle) == (
        "/etc/ssl/certs", ".pem", "/etc/ssl/certs/ca-certificates.crt",
    )
    assert (d.postgres_service, d.postgres_config_dir, d.postgres_socket_dir, d.postgres_user) == (
        "postgresql", "/etc/postgresql/15/main", "/var/run/postgresql", "postgres",
    )
    assert d.postgres_unit("/etc/postgresql/16/main/") == (
        "postgresql@16-main", "/var/log/postgresql/postgresql-16-main.log",
    )
    assert d.postgres_unit("/var/lib/pgsql/data") is None
    assert (d.mysql_service, d.mysql_config_dir, d.mysql_server_binaries, d.mysql_user) == (
        "mariadb", "/etc/mysql/mariadb.conf.d", ("mariadbd", "mysqld"), "mysql",
    )
    assert (d.nginx_service, d.nginx_site_file, d.nginx_tls_dir) == (
        "nginx", "/etc/nginx/conf.d/mattermost.conf", "/etc/nginx/mattermost-tls",
    )
    assert (d.sshd_dropin_dir, d.sshd_units) == ("/etc/ssh/sshd_config.d", ("ssh.service", "sshd.service"))
    assert (d.iptables, d.iptables_restore) == ("iptables", "iptables-restore")
    assert d.firewall_units == ("ufw.service", "netfilter-persistent.service")
    assert d.firewall_rule_files == ("/etc/ufw/before.rules", "/etc/ufw/after.rules", "/etc/iptables/rules.v4")
    assert d.install(d.jq_package) == "apt-get install jq"
    assert d.install(d.cluster_packages) == "apt-get install openssh-client openssh-server iptables iproute2 procps passwd"
    assert d.server_user("mysql") == "mysql" and d.server_user("postgres") == "postgres"


def test_the_registry_knows_debian_only_and_refuses_other_names() -> None:
    assert PLATFORMS == {"debian": DEBIAN}
    assert platform_for("debian") is DEBIAN
    with pytest.raises(ValueError, match=r"unknown platform 'rhel': supported: debian .*components/platform.py"):
        platform_for("rhel")


@pytest.mark.parametrize(
    "change",
    [
        {"trust_update": "update-ca-certificates; reboot"},
        {"system_cert_dir": "/etc/ssl/$(id)"},
        {"install_hint": 'apt-get "install'},
        {"sshd_units": ("ssh.service", "a b")},
        {"iptables": "ipt`x`"},
    ],
)
def test_a_description_with_shell_in_a_value_is_refused(change: dict[str, Any]) -> None:
    """The templates take Platform values as they are: only plain text gets in."""
    with pytest.raises(ValueError, match="Platform 'debian'"):
        dataclasses.replace(DEBIAN, **change)


# ---------------------------------------------------------------- the renderers read the Platform


def test_node_trust_scripts_take_the_trust_store_from_the_platform() -> None:
    assert node_render.node_paths("/etc/mm", "mattermost", platform=FAKE).system_ca == (
        "/etc/pki/ca-trust/source/anchors/mattermost-transport-ca.pem"
    )
    debian_ca = node_render.node_paths("/etc/mm", "mattermost").system_ca
    fake_ca = node_render.node_paths("/etc/mm", "mattermost", platform=FAKE).system_ca
    assert changed(
        node_render.render_trust_restore_script(debian_ca),
        node_render.render_trust_restore_script(fake_ca, FAKE),
    ) == [
        ("if command -v update-ca-certificates >/dev/null 2>&1; then", "if command -v update-fake-trust >/dev/null 2>&1; then"),
        (
            "  update-ca-certificates || printf '%s\\n' \"warning: update-ca-certificates failed\" >&2",
            "  update-fake-trust || printf '%s\\n' \"warning: update-fake-trust failed\" >&2",
        ),
        ("for link in /etc/ssl/certs/*; do", "for link in /etc/pki/tls/certs/*; do"),
        (
            "      mattermost-transport-ca.pem|/usr/local/share/ca-certificates/mattermost-transport-ca.crt) rm -f \"$link\" ;;",
            "      mattermost-transport-ca.0|/etc/pki/ca-trust/source/anchors/mattermost-transport-ca.pem) rm -f \"$link\" ;;",
        ),
    ]
    assert changed(
        node_render.render_trust_activate_script(require_system_trust=True),
        node_render.render_trust_activate_script(require_system_trust=True, platform=FAKE),
    ) == [
        ("if command -v update-ca-certificates >/dev/null 2>&1; then", "if command -v update-fake-trust >/dev/null 2>&1; then"),
        ("  update-ca-certificates", "  update-fake-trust"),
        (
            '  mtm_node_fail "update-ca-certificates is not installed; the database driver verifies the server with '
            'the system trust store, so the CA must be added there (install ca-certificates)"',
            '  mtm_node_fail "update-fake-trust is not installed; the database driver verifies the server with '
            'the system trust store, so the CA must be added there (install fake-ca-certs)"',
        ),
    ]


def test_node_restart_scripts_refresh_the_platforms_trust_store() -> None:
    kw: dict[str, Any] = {"unit": "mattermost", "port": 8065, "upstream_name": "mm.internal", "timeout_seconds": 60}
    paths = node_render.node_paths("/etc/mm", "mattermost")
    debian = node_render.render_activate_script(**kw, paths=paths, require_system_trust=False)
    fake = node_render.render_activate_script(**kw, paths=paths, require_system_trust=False, platform=FAKE)
    assert changed(debian, fake) == [
        ("if command -v update-ca-certificates >/dev/null 2>&1; then", "if command -v update-fake-trust >/dev/null 2>&1; then"),
        ("  update-ca-certificates", "  update-fake-trust"),
        (
            "  printf '%s\\n' 'update-ca-certificates is not installed; system trust left as it is'",
            "  printf '%s\\n' 'update-fake-trust is not installed; system trust left as it is'",
        ),
    ]
    restore = changed(
        node_render.render_restore_activate_script(unit="mattermost"),
        node_render.render_restore_activate_script(unit="mattermost", platform=FAKE),
    )
    assert [new for _, new in restore] == [
        "if command -v update-fake-trust >/dev/null 2>&1; then",
        "  update-fake-trust || printf '%s\\n' \"warning: update-fake-trust failed\" >&2",
        "for link in /etc/pki/tls/certs/*; do",
        "      mattermost-transport-ca.0|/etc/pki/ca-trust/source/anchors/mattermost-transport-ca.pem) rm -f \"$link\" ;;",
    ]


def test_node_preflight_names_the_platforms_package() -> None:
    kw: dict[str, Any] = {
        "node": "mm1", "address": "10.0.0.1", "unit": "mattermost", "install_dir": "/opt/mattermost",
        "version": "10.11.0", "version_key": "mattermost.version", "cluster_enabled": False,
        "own_env": "/etc/mm/mattermost.env", "driver": "postgres", "tls_mode": "verify-full",
    }
    lines = changed(node_render.render_preflight_script(**kw), node_render.render_preflight_script(**kw, platform=FAKE))
    assert len(lines) == 1 and "(apt-get install jq)" in lines[0][0] and "(fakepkg add jq1)" in lines[0][1]


def test_server_control_takes_units_paths_and_users_from_the_platform() -> None:
    pg = database_render.server_control("postgres", service="postgresql", port=5432, config_dir="/etc/postgresql/16/main")
    assert pg.name == "postgresql@16-main" and "-h /var/run/postgresql " in pg.probe
    assert pg.local_sql.startswith("runuser -u postgres -- psql")
    fake = database_render.server_control(
        "postgres", service="postgresql-16", port=5432, config_dir="/srv/pg/16/main", platform=FAKE
    )
    assert fake.name == "pg-main@16" and fake.restart == "systemctl restart pg-main@16"
    assert "/srv/pg/log/16-main.log" in fake.logs and "-h /run/pgsql " in fake.probe
    assert fake.local_sql.startswith("runuser -u pgsql -- psql")
    # Debian's cluster dir names no cluster on the fake family: its service is used as it is
    other = database_render.server_control(
        "postgres", service="postgresql-16", port=5432, config_dir="/etc/postgresql/16/main", platform=FAKE
    )
    assert other.name == "postgresql-16"
    my = database_render.server_control("mysql", service="mariadb", port=3306, config_dir="/etc/mysql/mariadb.conf.d")
    assert my.config_check == 'srv=$(command -v mariadbd || command -v mysqld) && "$srv" --help --verbose'
    my_fake = database_render.server_control(
        "mysql", service="mysqld", port=3306, config_dir="/etc/my.cnf.d", platform=FAKE
    )
    assert my_fake.config_check == 'srv=$(command -v mysqld) && "$srv" --help --verbose'
    assert changed(
        database_render.render_validate("mysql", my, config_file="/etc/x.cnf", tls_dir="/etc/t"),
        database_render.render_validate("mysql", my, config_file="/etc/x.cnf", tls_dir="/etc/t", platform=FAKE),
    ) == [
        ("if ! runuser -u mysql -- test -r /etc/t/server.key; then", "if ! runuser -u mysqlsrv -- test -r /etc/t/server.key; then"),
        (
            '  echo "the server user mysql cannot read "/etc/t/server.key; exit 1',
            '  echo "the server user mysqlsrv cannot read "/etc/t/server.key; exit 1',
        ),
    ]


def test_config_store_preflight_names_the_platforms_package() -> None:
    kw: dict[str, Any] = {
        "engine": "postgres", "local_sql": "psql", "database": "mattermost", "address": "10.0.0.5",
        "cluster_enabled": False, "accept_pg": "verify-full", "replica_targets": (), "search_targets": (),
    }
    lines = changed(
        db_replicas_render.render_config_store_preflight(**kw),
        db_replicas_render.render_config_store_preflight(**kw, platform=FAKE),
    )
    assert len(lines) == 1 and "(apt-get install jq)" in lines[0][0] and "(fakepkg add jq1)" in lines[0][1]


def test_teleport_unit_scans_the_platforms_cert_dir() -> None:
    kw: dict[str, Any] = {"binary": "/usr/local/bin/teleport-mattermost", "config_file": "/etc/t.toml", "ca_dir": "/etc/tca"}
    assert changed(teleport_render.render_unit(**kw), teleport_render.render_unit(**kw, platform=FAKE)) == [
        ("Environment=SSL_CERT_DIR=/etc/tca:/etc/ssl/certs", "Environment=SSL_CERT_DIR=/etc/tca:/etc/pki/tls/certs"),
    ]


@pytest.fixture(scope="module")
def plan() -> cluster_render.ClusterPlan:
    cfg = parse({**good(), "cluster": {"enabled": True}})
    return adapter.cluster_plan(cfg)


def test_cluster_sshd_and_firewall_take_paths_units_and_tools_from_the_platform(plan: cluster_render.ClusterPlan) -> None:
    r = cluster_render
    assert r.sshd_dropin() == r.SSHD_DROPIN == "/etc/ssh/sshd_config.d/50-mattermost-cluster-tunnel.conf"
    assert r.sshd_dropin(FAKE) == "/etc/ssh/sshd.d/50-mattermost-cluster-tunnel.conf"
    assert r.render_sshd_reload() == r.SSHD_RELOAD
    assert changed(r.render_sshd_reload(), r.render_sshd_reload(FAKE)) == [
        ("for u in ssh.service sshd.service; do", "for u in sshd.service; do"),
    ]
    validate = changed(r.render_sshd_validate(plan, "mm1"), r.render_sshd_validate(plan, "mm1", FAKE))
    assert validate == [
        ("dropin=/etc/ssh/sshd_config.d/50-mattermost-cluster-tunnel.conf", "dropin=/etc/ssh/sshd.d/50-mattermost-cluster-tunnel.conf"),
        ("include='Include /etc/ssh/sshd_config.d/*.conf'", "include='Include /etc/ssh/sshd.d/*.conf'"),
    ]
    assert changed(r.render_firewall_unit(plan, "mm1"), r.render_firewall_unit(plan, "mm1", FAKE)) == [
        ("After=ufw.service netfilter-persistent.service", "After=firewalld.service"),
    ]
    for debian, fake in (
        (r.render_firewall_activate(), r.render_firewall_activate(FAKE)),
        (r.render_helper(), r.render_helper(FAKE)),
    ):
        lines = changed(debian, fake)
        assert lines and all(
            re.sub(r"\biptables-nft(-restore)?\b", lambda m: "iptables" + (m[1] or ""), new) == old
            for old, new in lines
        ), lines
        assert not re.search(r"(^|[ ($!])iptables(-restore)? ", "\n".join(n for _, n in lines))
    helper = changed(r.render_helper(), r.render_helper(FAKE))
    assert any("iptables-nft-restore -w -n" in new for _, new in helper)


def test_cluster_preflight_checks_the_platforms_tools(plan: cluster_render.ClusterPlan) -> None:
    lines = changed(cluster_render.render_preflight(plan, "mm1"), cluster_render.render_preflight(plan, "mm1", FAKE))
    news = [new for _, new in lines]
    assert news[0] == "for tool in ssh sshd iptables-nft iptables-nft-restore systemctl ss useradd ps journalctl; do"
    assert news[1] == '  say "missing tools:$missing (Fake: fakepkg add openssh iptables-nft)"'
    assert news[2] == "for f in /etc/sysconfig/iptables; do"
    assert news[3] == "if command -v iptables-nft >/dev/null 2>&1; then"
    assert news[4].startswith("  iptables-nft -w -t nat -S OUTPUT")
    assert "Remove it: iptables-nft -t nat" in news[5]
    assert len(lines) == 6


# ---------------------------------------------------------------- chosen per host, in the config


def test_every_host_is_debian_unless_it_says_otherwise() -> None:
    cfg = parse(good())
    hosts = [*cfg.nodes, cfg.proxy, cfg.database, cfg.gitlab, cfg.teleport]
    assert {h.platform for h in hosts} == {"debian"}
    assert (cfg.proxy.site_file, cfg.proxy.tls_dir, cfg.proxy.service) == (
        "/etc/nginx/conf.d/mattermost.conf", "/etc/nginx/mattermost-tls", "nginx",
    )
    assert (cfg.database.effective_service, cfg.database.effective_config_dir) == ("mariadb", "/etc/mysql/mariadb.conf.d")


def with_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PLATFORMS, FAKE.name, FAKE)


def test_a_registered_family_gives_its_hosts_its_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    with_fake(monkeypatch)
    raw = good()
    raw["proxy"]["platform"] = "fake"
    raw["database"]["platform"] = "fake"
    cfg: StackConfig = parse(raw)
    assert (cfg.proxy.site_file, cfg.proxy.tls_dir, cfg.proxy.service) == (
        "/etc/nginx/sites.d/mm.conf", "/etc/nginx/tls-mm", "nginx-fake",
    )
    assert (cfg.database.effective_service, cfg.database.effective_config_dir) == ("mysqld", "/etc/my.cnf.d")
    assert cfg.database.host_platform is FAKE and [n.platform for n in cfg.nodes] == ["debian"] * 3
    # what the admin sets stays
    raw["proxy"]["siteFile"] = "/etc/nginx/own.conf"
    raw["database"]["service"] = "mariadb"
    cfg = parse(raw)
    assert cfg.proxy.site_file == "/etc/nginx/own.conf" and cfg.database.effective_service == "mariadb"

"""The config schema: good configs parse with the right defaults; every bad one fails with the
full key and a fix, and never echoes a secret."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from components.config import PROJECT, ConfigError, load, parse


def _rsa_host_key() -> str:
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return k.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


RSA_HOSTKEY = _rsa_host_key()


def _keypair() -> tuple[str, str]:
    k = ed25519.Ed25519PrivateKey.generate()
    priv = k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    pub = k.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return priv, pub


PRIV, HOSTKEY = _keypair()


def good() -> dict[str, Any]:
    return {
        "sshPrivateKey": PRIV,
        "nodes": [
            {"name": "mm1", "address": "10.10.250.146", "ssh": {"hostKey": HOSTKEY}},
            {"name": "mm2", "address": "10.10.250.231", "ssh": {"hostKey": HOSTKEY}},
            {"name": "mm3", "address": "10.10.250.165", "ssh": {"hostKey": HOSTKEY}},
        ],
        "proxy": {"address": "10.10.250.107", "ssh": {"hostKey": HOSTKEY}, "serverName": "chat.example.com"},
        "database": {"engine": "mysql", "address": "10.10.250.148", "ssh": {"hostKey": HOSTKEY}},
    }


def test_good_config_and_defaults() -> None:
    cfg = parse(good())
    assert [n.name for n in cfg.nodes] == ["mm1", "mm2", "mm3"]
    assert cfg.database.effective_tls_mode == "true"
    assert cfg.database.effective_port == 3306
    assert cfg.node_setting(cfg.nodes[0], "service_group") == "mattermost"
    assert cfg.version_of(cfg.nodes[0]) == (10, 11, 0)
    pg = good()
    pg["database"]["engine"] = "postgres"
    assert parse(pg).database.effective_tls_mode == "verify-full"
    assert parse(pg).database.effective_port == 5432


def test_gitlab_database_defaults_are_its_own() -> None:
    d = good()
    d["database"]["engine"] = "postgres"
    _gitlab()(d)
    cfg = parse(d)
    gl, db = cfg.gitlab, cfg.database
    assert (gl.database_name, gl.database_user) == ("gitlab_mattermost", "gitlab_mmuser")
    assert gl.database_name != db.name and gl.database_user != db.user
    _gitlab(databaseName="chat_gl", databaseUser="chat_gl")(d)  # one name for both is fine
    assert parse(d).gitlab.database_user == "chat_gl"


def test_unit_suffix_is_normalised_and_overrides_win() -> None:
    d = good()
    d["mattermost"] = {"unit": "mattermost.service", "tlsDir": "/etc/mm-tls/"}
    d["nodes"][1]["unit"] = "mattermost-b.service"
    cfg = parse(d)
    assert cfg.mattermost.unit == "mattermost"
    assert cfg.mattermost.tls_dir == "/etc/mm-tls"
    assert cfg.node_setting(cfg.nodes[1], "unit") == "mattermost-b"
    assert cfg.node_setting(cfg.nodes[0], "unit") == "mattermost"


def _set(path: str, value: Any):
    """A mutation that sets a dotted/indexed path in the raw config (value None deletes)."""

    def mutate(d: dict[str, Any]) -> None:
        parts = path.replace("[", ".").replace("]", "").split(".")
        cur: Any = d
        for p in parts[:-1]:
            cur = cur[int(p)] if p.isdigit() else cur.setdefault(p, {})
        last = parts[-1]
        if value is None:
            del cur[int(last) if last.isdigit() else last]
        elif last.isdigit():
            cur[int(last)] = value
        else:
            cur[last] = value

    return mutate


def _gitlab(**extra: Any):
    return _set("gitlab", {"enabled": True, "address": "10.10.250.150", "ssh": {"hostKey": HOSTKEY}, **extra})


def _both(*ms):
    def mutate(d: dict[str, Any]) -> None:
        for m in ms:
            m(d)

    return mutate


# (id, mutation, key expected in the message, a word of the fix expected in the message)
BAD: list[tuple[str, Any, str, str]] = [
    ("no nodes", _set("nodes", []), "nodes", "at least 1"),
    ("node without address", _set("nodes.0.address", None), "nodes[0].address", "missing"),
    ("node address not an IP", _set("nodes.1.address", "mm2.example.com"), "nodes[1].address", "IP address"),
    ("node address garbage", _set("nodes.1.address", "10.0.0.300"), "nodes[1].address", "IP address"),
    ("duplicate node address", _set("nodes.2.address", "10.10.250.146"), "nodes[2].address", "used twice"),
    ("duplicate node name", _set("nodes.2.name", "mm1"), "nodes[2].name", "used twice"),
    ("name with shell metachar", _set("nodes.0.name", "mm1;reboot"), "nodes[0].name", "lowercase letters"),
    ("name with newline", _set("nodes.0.name", "mm1\nExecStart=/bin/sh"), "nodes[0].name", "lowercase letters"),
    ("name with space", _set("nodes.0.name", "mm 1"), "nodes[0].name", "lowercase letters"),
    ("name uppercase unit-breaker", _set("nodes.0.name", "MM@1"), "nodes[0].name", "lowercase letters"),
    ("name too long", _set("nodes.0.name", "a" * 40), "nodes[0].name", "1-32"),
    ("node missing host key", _set("nodes.1.ssh.hostKey", None), "nodes[1].ssh.hostKey", "pin"),
    ("host key garbage", _set("nodes.0.ssh.hostKey", "not a key"), "nodes[0].ssh.hostKey", "authorized_keys"),
    ("host key type mismatch", _set("nodes.0.ssh.hostKey", "ssh-rsa " + HOSTKEY.split()[1]), "nodes[0].ssh.hostKey", "data is a ssh-ed25519"),
    ("host key bad base64", _set("nodes.0.ssh.hostKey", "ssh-ed25519 AAAA$$$"), "nodes[0].ssh.hostKey", "decode"),
    ("relative tls dir", _set("mattermost.tlsDir", "etc/mattermost-tls"), "mattermost.tlsDir", "absolute"),
    ("dotdot tls dir", _set("mattermost.tlsDir", "/opt/../etc"), "mattermost.tlsDir", "'..'"),
    ("tls dir with quote", _set("mattermost.tlsDir", "/opt/matter'most"), "mattermost.tlsDir", "absolute"),
    ("install dir with newline", _set("mattermost.tlsDir", "/etc/x\n/etc/y"), "mattermost.tlsDir", "absolute"),
    ("bad service group", _set("mattermost.serviceGroup", "root;id"), "mattermost.serviceGroup", "user or group"),
    ("bad unit", _set("mattermost.unit", "matter most"), "mattermost.unit", "unit name"),
    ("bad version", _set("mattermost.version", "ten"), "mattermost.version", "version like"),
    ("bad port", _set("mattermost.port", 70000), "mattermost.port", "less than or equal to 65535"),
    ("unknown engine", _set("database.engine", "oracle"), "database.engine", "'mysql' or 'postgres'"),
    ("sslmode required typo", _both(_set("database.engine", "postgres"), _set("database.tlsMode", "required")), "database.tlsMode", "verify-full"),
    ("unknown tls mode", _set("database.tlsMode", "maybe"), "database.tlsMode", "not a TLS mode"),
    ("mysql tls=false", _set("database.tlsMode", "false"), "database.tlsMode", "not a TLS mode"),
    ("mysql preferred", _set("database.tlsMode", "preferred"), "database.tlsMode", "not a TLS mode"),
    ("postgres mode on mysql", _set("database.tlsMode", "verify-full"), "database.tlsMode", "does not apply to mysql"),
    ("skip-verify without opt-in", _set("database.tlsMode", "skip-verify"), "database.tlsMode", "allowUnverifiedTls"),
    ("mysql on v11", _set("mattermost.version", "11.0.2"), "database.engine", "postgres"),
    ("mysql on a v11 node", _set("nodes.2.version", "11.1.0"), "database.engine", "node mm3"),
    ("db missing address", _set("database.address", None), "database.address", "missing"),
    ("db missing host key", _set("database.ssh", {}), "database.ssh.hostKey", "pin"),
    ("db name injection", _set("database.name", "mm; DROP DATABASE x"), "database.name", "SQL identifier"),
    ("db user injection", _set("database.user", "mm'@'%"), "database.user", "SQL identifier"),
    ("proxy missing address", _set("proxy.address", None), "proxy.address", "missing"),
    ("proxy is a node", _set("proxy.address", "10.10.250.146"), "proxy.address", "must not be one of the nodes"),
    ("proxy server name bad", _set("proxy.serverName", "chat example"), "proxy.serverName", "DNS name"),
    ("proxy site file relative", _set("proxy.siteFile", "sites/mm.conf"), "proxy.siteFile", "absolute"),
    ("provided tls without key", _set("proxy.tls", {"source": "provided"}), "proxy.tls", "proxyTlsKey"),
    ("provided cert not PEM", _set("proxy.tls", {"source": "provided", "cert": "hello"}), "proxy.tls.cert", "PEM"),
    ("unparseable private key", _set("sshPrivateKey", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"), "sshPrivateKey", "does not parse"),
    ("missing private key", _set("sshPrivateKey", None), "sshPrivateKey", "`pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`"),
    ("renewal longer than validity", _set("ca", {"validityHours": 100, "earlyRenewalHours": 200}), "ca.earlyRenewalHours", "shorter"),
    ("cert renewal longer than validity", _set("ca", {"certValidityHours": 48, "certEarlyRenewalHours": 48}), "ca.certEarlyRenewalHours", "shorter"),
    ("cert outlives CA", _set("ca", {"validityHours": 1000, "earlyRenewalHours": 10, "certValidityHours": 2000}), "ca.certValidityHours", "outlive"),
    ("unknown field", _set("nodes.0.adress", "10.0.0.1"), "nodes[0].adress", "did you mean 'nodes[0].address'?"),
    ("admin user without password", _set("database.adminUser", "root"), "dbAdminPassword", "--secret"),
    ("db password with newline", _set("dbPassword", "pass\nword"), "dbPassword", "control characters"),
    ("cluster name injection", _set("cluster", {"enabled": True, "name": "a b;c"}), "cluster.name", "pattern"),
    # keys that did nothing were removed: a stack still carrying one is told so, not guessed at
    ("relative install dir", _set("mattermost.installDir", "opt/mattermost"), "mattermost.installDir", "absolute"),
    ("node install dir with quote", _set("nodes.0.installDir", "/opt/matter'most"), "nodes[0].installDir", "absolute"),
    ("removed mattermost.serviceUser", _set("mattermost.serviceUser", "mattermost"), "mattermost.serviceUser", "removed: the node key is readable by the service group"),
    ("removed nodes[].serviceUser", _set("nodes.1.serviceUser", "mattermost"), "nodes[1].serviceUser", "pulumi config rm --path 'nodes[1].serviceUser'"),
    ("nested typo", _set("proxy.sevrerName", "chat.example.com"), "proxy.sevrerName", "did you mean 'proxy.serverName'?"),
    ("deep typo", _set("proxy.tls", {"sorce": "ca"}), "proxy.tls.sorce", "did you mean 'proxy.tls.source'?"),
    ("unknown nested key lists the section", _set("database.zzz", 1), "database.zzz", "database takes address, adminUser"),
    ("version as a float", _set("mattermost.version", 10.11), "mattermost.version", 'quote it, e.g. version: "10.11.3"'),
    ("version as an int", _set("nodes.1.version", 11), "nodes[1].version", "quote it"),
    ("tls mode as a YAML boolean", _set("database.tlsMode", True), "database.tlsMode", 'quote it, tlsMode: "true"'),
    ("version with non-ASCII digits", _set("mattermost.version", "\u0661\u0660.\u0661\u0661.0"), "mattermost.version", "version like"),
    ("RSA pin on a node", _set("nodes.1.ssh.hostKey", RSA_HOSTKEY), "nodes[1].ssh.hostKey", "`ssh-keyscan -t ed25519 10.10.250.231`"),
    ("RSA pin on the proxy", _set("proxy.ssh", {"hostKey": RSA_HOSTKEY, "port": 2222}), "proxy.ssh.hostKey", "OpenSSH >= 8.8 refuses"),
    ("RSA pin names the port", _set("database.ssh", {"hostKey": RSA_HOSTKEY, "port": 2222}), "database.ssh.hostKey", "ssh-keyscan -t ed25519 -p 2222 10.10.250.148"),
    ("teleport addr with non-ASCII digits", _set("teleport", {"authAddr": "teleport.example.com:\u0663\u0660\u0662\u0665"}), "teleport.authAddr", "non-ASCII"),
    ("teleport addr with a bad host", _set("teleport", {"authAddr": "a..b:3025"}), "teleport.authAddr", "neither an IP address nor a DNS name"),
    ("teleport addr without port", _set("teleport", {"authAddr": "teleport.example.com"}), "teleport.authAddr", "host:port"),
    ("teleport addr bare IPv6", _set("teleport", {"authAddr": "2001:db8::1:3025"}), "teleport.authAddr", "in brackets"),
    ("path too long", _set("mattermost.tlsDir", "/" + "a/" * 520 + "b"), "mattermost.tlsDir", "at most 1024"),
    ("path component too long", _set("proxy.siteFile", "/etc/nginx/" + "s" * 201), "proxy.siteFile", "per component"),
    ("node name equals a tunnel name", _both(_set("cluster", {"enabled": True}), _set("nodes.2.name", "mm1-cluster-tunnels")), "nodes[2].name", "node mm1's cluster setup"),
    ("node named like the proxy", _set("nodes.0.name", "proxy"), "nodes[0].name", "resource names must be unique"),
    ("node named like the database", _set("nodes.1.name", "database"), "nodes[1].name", "'database'"),
    ("gitlab shares the nodes' database", _both(_set("database.engine", "postgres"), _gitlab(databaseName="mattermost")), "gitlab.databaseName", "set gitlab.databaseName to another name (e.g. 'gitlab_mattermost')"),
    ("gitlab shares the nodes' role", _both(_set("database.engine", "postgres"), _gitlab(databaseUser="mmuser")), "gitlab.databaseUser", "the nodes' database.user on the same PostgreSQL server (10.10.250.148)"),
    ("gitlab shares a renamed role, other case", _both(_set("database.engine", "postgres"), _set("database.user", "chat"), _gitlab(databaseUser="Chat")), "gitlab.databaseUser", "(e.g. 'gitlab_mmuser')"),
    ("gitlab's default is the nodes' name", _both(_set("database.engine", "postgres"), _set("database.name", "gitlab_mattermost"), _gitlab()), "gitlab.databaseName", "(e.g. 'gitlab_gitlab_mattermost')"),
]


@pytest.mark.parametrize("mutate,key,fix", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_names_key_and_fix(mutate: Any, key: str, fix: str) -> None:
    d = copy.deepcopy(good())
    mutate(d)
    with pytest.raises(ConfigError) as e:
        parse(d)
    msg = str(e.value)
    assert f"{PROJECT}:{key}" in msg, msg
    assert fix in msg, msg
    assert "PRIVATE KEY" not in msg and PRIV.splitlines()[1] not in msg, "a secret leaked into the error"


def test_at_least_thirty_bad_configs() -> None:
    assert len(BAD) >= 30


def _getter(raw: dict[str, Any]):
    def get(key: str) -> str | None:
        k = key.split(":", 1)[1]
        if k not in raw:
            return None
        v = raw[k]
        return v if isinstance(v, str) else json.dumps(v)

    return get


def test_load_reads_pulumi_style_values_and_rejects_plain_secrets() -> None:
    raw = good()
    cfg = load(_getter(raw), set_keys=set(raw), is_secret=lambda k: k.endswith("sshPrivateKey"))
    assert cfg.proxy.server_name == "chat.example.com"
    with pytest.raises(ConfigError, match=r"sshPrivateKey: this value is a secret.*--secret sshPrivateKey"):
        load(_getter(raw), set_keys=set(raw), is_secret=lambda k: False)


def test_load_rejects_unknown_keys_with_a_suggestion() -> None:
    raw = good()
    raw["node"] = []
    with pytest.raises(ConfigError, match=r"mattermost-transport-encryption:node: unknown key \(did you mean 'nodes'\?\)"):
        load(_getter(raw), set_keys=set(raw), is_secret=lambda k: True)


def test_inventory_fills_addresses_and_keys(tmp_path) -> None:
    key_file = tmp_path / "id"
    key_file.write_text(PRIV)
    inv = {
        "sshUser": "root",
        "sshPrivateKeyFile": str(key_file),
        "hosts": {
            "mm1": {"address": "10.251.0.101", "port": 22, "hostKey": HOSTKEY},
            "proxy": {"address": "10.251.0.10", "port": 22, "hostKey": HOSTKEY},
            "postgres": {"address": "10.251.0.21", "port": 22, "hostKey": HOSTKEY},
        },
    }
    (tmp_path / "inventory.json").write_text(json.dumps(inv))
    cfg = parse({"inventoryFile": "inventory.json", "nodes": [{"name": "mm1"}]}, base_dir=tmp_path)
    assert cfg.nodes[0].address == "10.251.0.101"
    assert cfg.proxy.address == "10.251.0.10"
    assert cfg.database.address == "10.251.0.21"
    assert cfg.ssh_private_key.get_secret_value().strip() == PRIV.strip()


def test_missing_inventory_says_how_to_make_it(tmp_path) -> None:
    with pytest.raises(ConfigError, match="inventoryFile: .* does not exist; start the lab first"):
        parse({"inventoryFile": "nope.json", "nodes": [{"name": "mm1"}]}, base_dir=tmp_path)


def test_good_edge_values_pass() -> None:
    d = good()
    d["teleport"] = {"authAddr": "[2001:db8::1]:3025"}
    d["proxy"]["siteFile"] = "/etc/nginx/" + "s" * 200
    d["nodes"][0]["ssh"]["hostKey"] = HOSTKEY
    cfg = parse(d)
    assert cfg.teleport.auth_addr == "[2001:db8::1]:3025"
    d["teleport"] = {"authAddr": "Teleport.Example.com:443"}
    assert parse(d).teleport.auth_addr == "teleport.example.com:443"


def test_empty_project_defaults_mean_unset() -> None:
    """Pulumi.yaml gives optional secrets and inventoryFile `default: ""` (a declared key without a
    default is required by the CLI); the CLI hands that default to the program as a plain value."""
    raw = good()
    raw.update({k: "" for k in ("dbPassword", "dbAdminPassword", "proxyTlsKey", "teleportToken", "gitlabTlsKey", "inventoryFile")})
    cfg = load(_getter(raw), set_keys=set(raw), is_secret=lambda k: k.endswith("sshPrivateKey"))
    assert cfg.db_password is None and cfg.teleport_token is None
    raw["sshPrivateKey"] = ""
    with pytest.raises(ConfigError, match=r"sshPrivateKey: missing: set it with `pulumi config set --secret sshPrivateKey"):
        load(_getter(raw), set_keys=set(raw), is_secret=lambda k: False)

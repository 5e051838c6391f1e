"""Valid stack configs for the config, render and program tests, and the catalogue of bad ones.

`good()` is a fresh raw config (the dict `components.config.parse` takes) of three nodes, a proxy
and a MariaDB server, every host pinned to `HOSTKEY`; `BAD` lists mutations of it, each with the
key its error must name and a word of the fix it must give, for every section the GitLab and
Teleport ones included (tests/unit/test_config.py checks the parser, tests/program/test_program.py
the whole program).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from components.config import PROJECT, ConfigError, StackConfig, parse
from tests.helpers.certs import ssh_keypair


def _rsa_host_key() -> str:
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return k.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


RSA_HOSTKEY = _rsa_host_key()


PRIV, HOSTKEY = ssh_keypair()


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


def parse_error(raw: dict[str, Any]) -> str:
    """The message `parse` refuses `raw` with (the test fails if it accepts it)."""
    with pytest.raises(ConfigError) as e:
        parse(raw)
    return str(e.value)


def assert_names_key_and_fix(raw: dict[str, Any], key: str, fix: str) -> str:
    """`parse` refuses `raw` with a message naming the config `key` and containing `fix`; the message."""
    msg = parse_error(raw)
    assert f"{PROJECT}:{key}:" in msg, msg
    assert fix in msg, msg
    return msg


def set_path(path: str, value: Any):
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


def with_gitlab(**extra: Any):
    return set_path("gitlab", {"enabled": True, "address": "10.10.250.150", "ssh": {"hostKey": HOSTKEY}, **extra})


def both(*ms):
    def mutate(d: dict[str, Any]) -> None:
        for m in ms:
            m(d)

    return mutate


def with_postgres_gitlab(**extra: Any):
    """GitLab on, its bundled Mattermost on the nodes' PostgreSQL server (its default)."""
    return both(set_path("database.engine", "postgres"), with_gitlab(**extra))


def with_teleport(**extra: Any):
    """The Teleport plugin on, with its token."""
    return both(
        set_path("teleport", {"enabled": True, "address": "10.10.250.160", "ssh": {"hostKey": HOSTKEY}, **extra}),
        set_path("teleportToken", "xq7nd3kgm8r1bz4yyu5cw9ptoa"),
    )


# (id, mutation, key expected in the message, a word of the fix expected in the message)
BAD: list[tuple[str, Any, str, str]] = [
    ("no nodes", set_path("nodes", []), "nodes", "at least 1"),
    ("node without address", set_path("nodes.0.address", None), "nodes[0].address", "missing"),
    ("node address not an IP", set_path("nodes.1.address", "mm2.example.com"), "nodes[1].address", "IP address"),
    ("node address garbage", set_path("nodes.1.address", "10.0.0.300"), "nodes[1].address", "IP address"),
    ("duplicate node address", set_path("nodes.2.address", "10.10.250.146"), "nodes[2].address", "used twice"),
    ("duplicate node name", set_path("nodes.2.name", "mm1"), "nodes[2].name", "used twice"),
    ("name with shell metachar", set_path("nodes.0.name", "mm1;reboot"), "nodes[0].name", "lowercase letters"),
    ("name with newline", set_path("nodes.0.name", "mm1\nExecStart=/bin/sh"), "nodes[0].name", "lowercase letters"),
    ("name with space", set_path("nodes.0.name", "mm 1"), "nodes[0].name", "lowercase letters"),
    ("name uppercase unit-breaker", set_path("nodes.0.name", "MM@1"), "nodes[0].name", "lowercase letters"),
    ("name too long", set_path("nodes.0.name", "a" * 40), "nodes[0].name", "1-32"),
    ("node missing host key", set_path("nodes.1.ssh.hostKey", None), "nodes[1].ssh.hostKey", "pin"),
    ("host key garbage", set_path("nodes.0.ssh.hostKey", "not a key"), "nodes[0].ssh.hostKey", "authorized_keys"),
    ("host key type mismatch", set_path("nodes.0.ssh.hostKey", "ssh-rsa " + HOSTKEY.split()[1]), "nodes[0].ssh.hostKey", "data is a ssh-ed25519"),
    ("host key bad base64", set_path("nodes.0.ssh.hostKey", "ssh-ed25519 AAAA$$$"), "nodes[0].ssh.hostKey", "decode"),
    ("relative tls dir", set_path("mattermost.tlsDir", "etc/mattermost-tls"), "mattermost.tlsDir", "absolute"),
    ("dotdot tls dir", set_path("mattermost.tlsDir", "/opt/../etc"), "mattermost.tlsDir", "'..'"),
    ("tls dir with quote", set_path("mattermost.tlsDir", "/opt/matter'most"), "mattermost.tlsDir", "absolute"),
    ("install dir with newline", set_path("mattermost.tlsDir", "/etc/x\n/etc/y"), "mattermost.tlsDir", "absolute"),
    ("bad service group", set_path("mattermost.serviceGroup", "root;id"), "mattermost.serviceGroup", "user or group"),
    ("bad unit", set_path("mattermost.unit", "matter most"), "mattermost.unit", "unit name"),
    ("bad version", set_path("mattermost.version", "ten"), "mattermost.version", "version like"),
    ("bad port", set_path("mattermost.port", 70000), "mattermost.port", "less than or equal to 65535"),
    ("unknown engine", set_path("database.engine", "oracle"), "database.engine", "'mysql' or 'postgres'"),
    ("unknown node platform", set_path("nodes.1.platform", "rhel"), "nodes[1].platform", "supported: debian"),
    ("unknown proxy platform", set_path("proxy.platform", "alpine"), "proxy.platform", "components/platform.py"),
    ("unknown database platform", set_path("database.platform", "Debian"), "database.platform", "supported: debian"),
    ("sslmode required typo", both(set_path("database.engine", "postgres"), set_path("database.tlsMode", "required")), "database.tlsMode", "verify-full"),
    ("unknown tls mode", set_path("database.tlsMode", "maybe"), "database.tlsMode", "not a TLS mode"),
    ("mysql tls=false", set_path("database.tlsMode", "false"), "database.tlsMode", "not a TLS mode"),
    ("mysql preferred", set_path("database.tlsMode", "preferred"), "database.tlsMode", "not a TLS mode"),
    ("postgres mode on mysql", set_path("database.tlsMode", "verify-full"), "database.tlsMode", "does not apply to mysql"),
    ("skip-verify without opt-in", set_path("database.tlsMode", "skip-verify"), "database.tlsMode", "allowUnverifiedTls"),
    ("mysql on v11", set_path("mattermost.version", "11.0.2"), "database.engine", "postgres"),
    ("mysql on a v11 node", set_path("nodes.2.version", "11.1.0"), "database.engine", "node mm3"),
    ("db missing address", set_path("database.address", None), "database.address", "missing"),
    ("db missing host key", set_path("database.ssh", {}), "database.ssh.hostKey", "pin"),
    ("db name injection", set_path("database.name", "mm; DROP DATABASE x"), "database.name", "SQL identifier"),
    ("db user injection", set_path("database.user", "mm'@'%"), "database.user", "SQL identifier"),
    ("proxy missing address", set_path("proxy.address", None), "proxy.address", "missing"),
    ("proxy is a node", set_path("proxy.address", "10.10.250.146"), "proxy.address", "must not be one of the nodes"),
    ("proxy server name bad", set_path("proxy.serverName", "chat example"), "proxy.serverName", "DNS name"),
    ("proxy site file relative", set_path("proxy.siteFile", "sites/mm.conf"), "proxy.siteFile", "absolute"),
    ("provided tls without key", set_path("proxy.tls", {"source": "provided"}), "proxy.tls", "proxyTlsKey"),
    ("provided cert not PEM", set_path("proxy.tls", {"source": "provided", "cert": "hello"}), "proxy.tls.cert", "PEM"),
    ("unparseable private key", set_path("sshPrivateKey", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"), "sshPrivateKey", "does not parse"),
    ("missing private key", set_path("sshPrivateKey", None), "sshPrivateKey", "`pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`"),
    ("renewal longer than validity", set_path("ca", {"validityHours": 100, "earlyRenewalHours": 200}), "ca.earlyRenewalHours", "shorter"),
    ("cert renewal longer than validity", set_path("ca", {"certValidityHours": 48, "certEarlyRenewalHours": 48}), "ca.certEarlyRenewalHours", "shorter"),
    ("cert outlives CA", set_path("ca", {"validityHours": 1000, "earlyRenewalHours": 10, "certValidityHours": 2000}), "ca.certValidityHours", "outlive"),
    ("unknown field", set_path("nodes.0.adress", "10.0.0.1"), "nodes[0].adress", "did you mean 'nodes[0].address'?"),
    ("admin user without password", set_path("database.adminUser", "root"), "dbAdminPassword", "--secret"),
    ("db password with newline", set_path("dbPassword", "pass\nword"), "dbPassword", "control characters"),
    ("cluster name injection", set_path("cluster", {"enabled": True, "name": "a b;c"}), "cluster.name", "pattern"),
    # keys that did nothing were removed: a stack still carrying one is told so, not guessed at
    ("relative install dir", set_path("mattermost.installDir", "opt/mattermost"), "mattermost.installDir", "absolute"),
    ("node install dir with quote", set_path("nodes.0.installDir", "/opt/matter'most"), "nodes[0].installDir", "absolute"),
    ("removed mattermost.serviceUser", set_path("mattermost.serviceUser", "mattermost"), "mattermost.serviceUser", "removed: the node key is readable by the service group"),
    ("removed nodes[].serviceUser", set_path("nodes.1.serviceUser", "mattermost"), "nodes[1].serviceUser", "pulumi config rm --path 'nodes[1].serviceUser'"),
    ("nested typo", set_path("proxy.sevrerName", "chat.example.com"), "proxy.sevrerName", "did you mean 'proxy.serverName'?"),
    ("deep typo", set_path("proxy.tls", {"sorce": "ca"}), "proxy.tls.sorce", "did you mean 'proxy.tls.source'?"),
    ("unknown nested key lists the section", set_path("database.zzz", 1), "database.zzz", "database takes address, adminUser"),
    ("version as a float", set_path("mattermost.version", 10.11), "mattermost.version", 'quote it, e.g. version: "10.11.3"'),
    ("version as an int", set_path("nodes.1.version", 11), "nodes[1].version", "quote it"),
    ("tls mode as a YAML boolean", set_path("database.tlsMode", True), "database.tlsMode", 'quote it, tlsMode: "true"'),
    ("version with non-ASCII digits", set_path("mattermost.version", "\u0661\u0660.\u0661\u0661.0"), "mattermost.version", "version like"),
    ("RSA pin on a node", set_path("nodes.1.ssh.hostKey", RSA_HOSTKEY), "nodes[1].ssh.hostKey", "`ssh-keyscan -t ed25519 10.10.250.231`"),
    ("RSA pin on the proxy", set_path("proxy.ssh", {"hostKey": RSA_HOSTKEY, "port": 2222}), "proxy.ssh.hostKey", "OpenSSH >= 8.8 refuses"),
    ("RSA pin names the port", set_path("database.ssh", {"hostKey": RSA_HOSTKEY, "port": 2222}), "database.ssh.hostKey", "ssh-keyscan -t ed25519 -p 2222 10.10.250.148"),
    ("teleport addr with non-ASCII digits", set_path("teleport", {"authAddr": "teleport.example.com:\u0663\u0660\u0662\u0665"}), "teleport.authAddr", "non-ASCII"),
    ("teleport addr with a bad host", set_path("teleport", {"authAddr": "a..b:3025"}), "teleport.authAddr", "neither an IP address nor a DNS name"),
    ("teleport addr without port", set_path("teleport", {"authAddr": "teleport.example.com"}), "teleport.authAddr", "host:port"),
    ("teleport addr bare IPv6", set_path("teleport", {"authAddr": "2001:db8::1:3025"}), "teleport.authAddr", "in brackets"),
    ("path too long", set_path("mattermost.tlsDir", "/" + "a/" * 520 + "b"), "mattermost.tlsDir", "at most 1024"),
    ("path component too long", set_path("proxy.siteFile", "/etc/nginx/" + "s" * 201), "proxy.siteFile", "per component"),
    ("node name equals a tunnel name", both(set_path("cluster", {"enabled": True}), set_path("nodes.2.name", "mm1-cluster-tunnels")), "nodes[2].name", "node mm1's cluster setup"),
    ("node named like the proxy", set_path("nodes.0.name", "proxy"), "nodes[0].name", "resource names must be unique"),
    ("node named like the database", set_path("nodes.1.name", "database"), "nodes[1].name", "'database'"),
    ("gitlab shares the nodes' database", with_postgres_gitlab(databaseName="mattermost"), "gitlab.databaseName", "set gitlab.databaseName to another name (e.g. 'gitlab_mattermost')"),
    ("gitlab shares the nodes' role", with_postgres_gitlab(databaseUser="mmuser"), "gitlab.databaseUser", "the nodes' database.user on the same PostgreSQL server (10.10.250.148)"),
    ("gitlab shares a renamed role, other case", both(set_path("database.user", "chat"), with_postgres_gitlab(databaseUser="Chat")), "gitlab.databaseUser", "(e.g. 'gitlab_mmuser')"),
    ("gitlab's default is the nodes' name", both(set_path("database.name", "gitlab_mattermost"), with_postgres_gitlab()), "gitlab.databaseName", "(e.g. 'gitlab_gitlab_mattermost')"),
    ("gitlab 19 has no bundled Mattermost", with_postgres_gitlab(version="19.0.0"), "gitlab.version", "run Mattermost standalone"),
    ("gitlab 19.2", with_postgres_gitlab(version="19.2"), "gitlab.version", "removed in 19.0"),
    ("gitlab sslmode typo", with_postgres_gitlab(sslmode="required"), "gitlab.sslmode", "use 'verify-full' (recommended) or 'require'"),
    ("gitlab sslmode disable", with_postgres_gitlab(sslmode="disable"), "gitlab.sslmode", "verify-full"),
    ("gitlab require without opt-in", with_postgres_gitlab(sslmode="require"), "gitlab.sslmode", "allowUnverifiedTls"),
    ("gitlab url over http", with_postgres_gitlab(mattermostExternalUrl="http://mm.example.com"), "gitlab.mattermostExternalUrl", "'https://mm.example.com'"),
    ("gitlab url with a path", with_postgres_gitlab(mattermostExternalUrl="https://mm.example.com/sub"), "gitlab.mattermostExternalUrl", "no path"),
    ("gitlab url with credentials", with_postgres_gitlab(mattermostExternalUrl="https://u:p@mm.example.com"), "gitlab.mattermostExternalUrl", "https://<host>"),
    ("gitlab url with a bad host", with_postgres_gitlab(mattermostExternalUrl="https://bad host"), "gitlab.mattermostExternalUrl", ""),
    ("gitlab provided tls without key", with_postgres_gitlab(tlsSource="provided"), "gitlab.tlsSource", "gitlabTlsKey"),
    ("gitlab relative ssl dir", with_postgres_gitlab(sslDir="etc/gitlab/ssl"), "gitlab.sslDir", "absolute"),
    ("gitlab dotdot ca file", with_postgres_gitlab(caFile="/etc/../x"), "gitlab.caFile", "absolute"),
    ("teleport recipient with a space", with_teleport(recipients=["ok/fine", "Town Square"]), "teleport.recipients[1]", "team/channel"),
    ("teleport recipient too deep", with_teleport(recipients=["team/chan/extra"]), "teleport.recipients[0]", "email"),
    ("teleport recipient without a user", with_teleport(recipients=["@example.com"]), "teleport.recipients[0]", "email"),
    ("teleport without recipients", with_teleport(recipients=[]), "teleport.recipients", "at least 1"),
    ("teleport url over http", with_teleport(mattermostUrl="http://mm.example.com"), "teleport.mattermostUrl", "https://"),
    ("teleport url with a query", with_teleport(mattermostUrl="https://mm.example.com/?q=1"), "teleport.mattermostUrl", "https://<host>"),
    ("teleport relative identity file", with_teleport(identityFile="auth_id"), "teleport.identityFile", "absolute"),
    ("teleport dotdot identity file", with_teleport(identityFile="/var/lib/../auth_id"), "teleport.identityFile", "no '..'"),
    ("teleport log to syslog", with_teleport(logOutput="syslog"), "teleport.logOutput", "absolute"),
    ("teleport log severity", with_teleport(logSeverity="TRACE"), "teleport.logSeverity", ""),
    ("teleport auth addr without port", with_teleport(authAddr="teleport.example.com"), "teleport.authAddr", ""),
    ("teleport auth port out of range", with_teleport(authAddr="teleport.example.com:70000"), "teleport.authAddr", "1-65535"),
]


# ---------------------------------------------------------------- lab-like configs (tests/program)

SSH_KEY = PRIV
HOST_KEYS = {n: ssh_keypair()[1] for n in ("mm1", "mm2", "mm3", "mm4", "proxy", "db")}
"""A pinned host key per host of `lab_like` (the database's is "db", whatever its engine)."""


def lab_like(nodes: Sequence[str] = ("mm1", "mm2"), **overrides: Any) -> StackConfig:
    """A parsed config with the lab's addresses: nodes mmN at 10.251.0.10N, the proxy at .10
    (serving chat.example.com), PostgreSQL at .21 (MariaDB at .20 with `database={"engine":
    "mysql"}`). `database` is merged into the database section; other keys replace theirs."""
    database: dict[str, Any] = {"ssh": {"hostKey": HOST_KEYS["db"]}, **overrides.pop("database", {})}
    database.setdefault("address", "10.251.0.20" if database.get("engine") == "mysql" else "10.251.0.21")
    raw: dict[str, Any] = {
        "sshPrivateKey": SSH_KEY,
        "nodes": [
            {"name": n, "address": f"10.251.0.{100 + int(n[2:])}", "ssh": {"hostKey": HOST_KEYS[n]}} for n in nodes
        ],
        "proxy": {"address": "10.251.0.10", "ssh": {"hostKey": HOST_KEYS["proxy"]}, "serverName": "chat.example.com"},
        "database": database,
        **overrides,
    }
    return parse(raw)

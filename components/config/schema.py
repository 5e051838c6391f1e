"""The stack configuration's schema: every section, its defaults, and the checks across
sections (a bad value fails naming its key and the fix, before any resource exists)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components.config.fields import (
    SECRET_SET_COMMANDS,
    AbsPath,
    Account,
    Address,
    DnsName,
    HostKey,
    HostPort,
    Ip,
    Name,
    PemCert,
    PlatformName,
    Port,
    SqlIdent,
    Unit,
    Version,
    _abs_path,
    _address,
    at_key,
    version_tuple,
)
from components.passwords import check_password
from components.platform import PLATFORMS, Platform, platform_for


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True, str_strip_whitespace=True
    )


# ---------------------------------------------------------------- sections


def ca_prefix(generation: int, component: str = "pki") -> str:
    """Resource-name prefix of one CA generation: `pki-ca` for the first (the names stacks made
    before rotations existed keep their URNs), `pki-ca<N>` after it."""
    return f"{component}-ca" if generation == 1 else f"{component}-ca{generation}"


class SshDefaults(Model):
    """SSH settings shared by every host unless the host overrides them."""

    user: Account = "root"
    """Login user; root, or a user with passwordless sudo (no PTY is ever requested)."""
    port: Port = 22


class HostSsh(Model):
    """How to reach one host over SSH."""

    host_key: HostKey | None = None
    """The host's SSH public host key, pinned for every connection (required)."""
    user: Account | None = None
    port: Port | None = None
    address: Address | None = None
    """Address to SSH to when it differs from the service address (e.g. a management network)."""


class Ca(Model):
    """The stack's private CA and the lifetime of the certificates it issues."""

    common_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9 ._-]{1,64}$")] = "Mattermost transport CA"
    organization: Annotated[str, Field(pattern=r"^[A-Za-z0-9 ._-]{1,64}$")] = "Mattermost"
    validity_hours: Annotated[int, Field(ge=24)] = 5 * 8760
    early_renewal_hours: Annotated[int, Field(ge=0)] = 90 * 24
    cert_validity_hours: Annotated[int, Field(ge=24)] = 8760
    cert_early_renewal_hours: Annotated[int, Field(ge=0)] = 30 * 24
    key_algorithm: Literal["ECDSA", "RSA"] = "ECDSA"
    generation: Annotated[int, Field(ge=1)] = 1
    """The CA that issues and is trusted outside a rotation. A rotation adds generation + 1 and
    ends by setting this to it (README "Renewing certificates and rotating the CA"); resource names follow it (ca_prefix)."""
    rotation: Literal["stage", "switch"] | None = None
    """A CA rotation in progress: `stage` adds generation + 1 to every trust bundle while the
    current CA still issues; `switch` issues every certificate from it, both still trusted.
    Unset: only `generation` exists (the old CA is dropped from trust and deleted)."""

    @property
    def issuer(self) -> int:
        """The generation that signs the server certificates."""
        return self.generation + 1 if self.rotation == "switch" else self.generation

    @property
    def trusted(self) -> tuple[int, ...]:
        """The generations every trust bundle holds, oldest first."""
        return (self.generation, self.generation + 1) if self.rotation else (self.generation,)

    @model_validator(mode="after")
    def _renewal_window(self) -> Ca:
        if self.early_renewal_hours >= self.validity_hours:
            raise at_key(
                "ca.earlyRenewalHours", "must be shorter than ca.validityHours, or every `pulumi up` would renew the CA"
            )
        if self.cert_early_renewal_hours >= self.cert_validity_hours:
            raise at_key(
                "ca.certEarlyRenewalHours",
                "must be shorter than ca.certValidityHours, or every `pulumi up` would renew the certificates",
            )
        if self.cert_validity_hours > self.validity_hours:
            raise at_key("ca.certValidityHours", "must not exceed ca.validityHours (a certificate cannot outlive its CA)")
        return self


class MattermostDefaults(Model):
    """Settings shared by every Mattermost node unless the node overrides them."""

    version: Version = "10.11.0"
    install_dir: AbsPath = "/opt/mattermost"
    """Where Mattermost is installed: the preflight runs `<installDir>/bin/mattermost version` and
    reads `<installDir>/config/config.json` when neither `--config` nor `MM_CONFIG` names another."""
    service_group: Account = "mattermost"
    """Group that may read the node's TLS key (`0640 root:<group>`): the group Mattermost runs as."""
    unit: Unit = "mattermost"
    port: Port = 8065
    tls_dir: AbsPath = "/etc/mattermost-tls"
    """Where each node's certificate, key and the CA are installed."""
    upstream_name: DnsName = "mattermost-app.internal"
    """A DNS name every node certificate carries; NGINX verifies the nodes against it."""
    start_timeout_seconds: Annotated[int, Field(ge=5, le=900)] = 120
    config_store: Literal["file", "database"] = "file"
    """Where the nodes keep their configuration: 'file' (config.json, default) or 'database'
    (MM_CONFIG names the stack's database; the program sets it to the verified-TLS DSN)."""


class Node(Model):
    """One Mattermost application server."""

    name: Name
    address: Ip | None = None
    ssh: HostSsh = HostSsh()
    platform: PlatformName = "debian"
    """The host's OS family (components/platform.py): its paths, units and trust-store command."""
    version: Version | None = None
    install_dir: AbsPath | None = None
    service_group: Account | None = None
    unit: Unit | None = None
    tunnel_slot: Annotated[int, Field(ge=0, le=999)] | None = None
    """Cluster tunnels: fixed slot for this node's local tunnel ports (default derived from the name)."""
    config_store: Literal["file", "database"] | None = None


class ProxyTls(Model):
    """The public certificate NGINX presents to browsers."""

    source: Literal["keep", "ca", "provided"] | None = None
    """'keep': the live site's own certificate (e.g. Let's Encrypt) stays; 'ca': issued by the stack CA (lab,
    internal); 'provided': certificate in `cert` and key in secret `proxyTlsKey`. Unset: 'keep' when the live
    site already serves HTTPS, else 'ca' (components/nginx_live.py)."""
    cert: PemCert | None = None


class Proxy(Model):
    """The NGINX reverse proxy in front of the nodes."""

    address: Address | None = None
    host: Name = "proxy"
    """Inventory host name (lab)."""
    ssh: HostSsh = HostSsh()
    platform: PlatformName = "debian"
    """The host's OS family (components/platform.py): its paths, units and trust-store command."""
    server_name: DnsName = "mattermost.example.com"
    site_file: AbsPath = "/etc/nginx/conf.d/mattermost.conf"
    """Default: the platform's (`Platform.nginx_site_file`)."""
    tls_dir: AbsPath = "/etc/nginx/mattermost-tls"
    """Default: the platform's (`Platform.nginx_tls_dir`)."""
    service: Unit = "nginx"
    """Default: the platform's (`Platform.nginx_service`)."""
    tls: ProxyTls = ProxyTls()
    upstream_keepalive: Annotated[int, Field(ge=0, le=1024)] | None = None
    """Idle keepalive connections from NGINX to the nodes. Unset: the live site's own `keepalive`
    stays as the admin set it (a site the program writes from its template gets 32)."""

    @model_validator(mode="before")
    @classmethod
    def _platform_defaults(cls, data: Any) -> Any:
        """siteFile, tlsDir and service default to the host platform's (an unknown platform is
        left to the `platform` field's own error)."""
        if not isinstance(data, dict):
            return data
        platform = PLATFORMS.get(data.get("platform", "debian"))
        if platform is None:
            return data
        data = dict(data)
        for field, alias, value in (
            ("site_file", "siteFile", platform.nginx_site_file),
            ("tls_dir", "tlsDir", platform.nginx_tls_dir),
            ("service", "service", platform.nginx_service),
        ):
            if field not in data and alias not in data:
                data[alias] = value
        return data


MYSQL_TLS_MODES = ("true", "skip-verify")
POSTGRES_SSLMODES = ("verify-full", "verify-ca", "require")


class DatabaseReplica(Model):
    """A read replica of the stack's PostgreSQL (streaming replication): it gets a certificate
    from the stack CA and refuses plain logins of the Mattermost user; every node gets a
    verified-TLS DSN for it (same user, password and database as the primary's)."""

    address: Address | None = None
    host: Name | None = None
    """Inventory host name (lab)."""
    ssh: HostSsh = HostSsh()
    server_name: DnsName | None = None
    """Name the DSN uses for the replica; default its address."""


class Database(Model):
    """The database the nodes use, and how TLS to it is verified."""

    engine: Literal["mysql", "postgres"] = "postgres"
    address: Address | None = None
    host: Name | None = None
    """Inventory host name (lab); default 'mariadb' for mysql, 'postgres' for postgres."""
    ssh: HostSsh = HostSsh()
    platform: PlatformName = "debian"
    """The host's OS family (components/platform.py); the replicas share it (same server layout)."""
    port: Port | None = None
    name: SqlIdent = "mattermost"
    user: SqlIdent = "mmuser"
    tls_mode: str | None = None
    """mysql: 'true' (verify, default) or 'skip-verify'; postgres: 'verify-full' (default), 'verify-ca' or 'require'."""
    allow_unverified_tls: bool = False
    """Set true to accept a tlsMode that encrypts without verifying the server (the manual guide's skip-verify)."""
    server_name: DnsName | None = None
    """Name the DSN uses for the server; default its address (an IP gets an IP SAN)."""
    admin_user: SqlIdent | None = None
    """Admin over TCP with secret `dbAdminPassword`; default: local admin over the socket on the DB host."""
    service: Unit | None = None
    """Server unit: default the platform's ('mariadb' for mysql, 'postgresql' for postgres on Debian)."""
    config_dir: AbsPath | None = None
    """mysql: the server's conf.d; postgres: the cluster's config dir. Default the platform's
    (Debian: /etc/mysql/mariadb.conf.d, /etc/postgresql/15/main)."""
    tls_dir: AbsPath | None = None
    """Where the server's certificate and key go (default <configDir>/mattermost-tls)."""
    replicas: Annotated[list[DatabaseReplica], Field(max_length=16)] = []
    """Mattermost's SqlSettings.DataSourceReplicas (read replicas), in order."""
    search_replicas: Annotated[list[DatabaseReplica], Field(max_length=16)] = []
    """Mattermost's SqlSettings.DataSourceSearchReplicas, in order."""
    rotate_password: bool = False
    """Without `dbPassword`: false keeps the password the site already uses (read from the first
    node's current DSN at apply time); true generates a new one."""

    @field_validator("tls_mode")
    @classmethod
    def _known_mode(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v == "required":
            raise ValueError(
                "'required' is not a PostgreSQL sslmode (lib/pq rejects it with 'unsupported sslmode'): "
                "use 'verify-full' (recommended) or 'require'"
            )
        if v not in MYSQL_TLS_MODES + POSTGRES_SSLMODES:
            raise ValueError(
                f"{v!r} is not a TLS mode: mysql takes {', '.join(MYSQL_TLS_MODES)}; postgres takes {', '.join(POSTGRES_SSLMODES)}"
            )
        return v

    @model_validator(mode="after")
    def _mode_fits_engine(self) -> Database:
        mode = self.effective_tls_mode
        allowed = MYSQL_TLS_MODES if self.engine == "mysql" else POSTGRES_SSLMODES
        if mode not in allowed:
            raise at_key("database.tlsMode", f"{mode!r} does not apply to {self.engine}: use one of {', '.join(allowed)}")
        if mode in ("skip-verify", "require") and not self.allow_unverified_tls:
            raise at_key(
                "database.tlsMode",
                f"{mode!r} encrypts without verifying the server; set database.allowUnverifiedTls: true to choose "
                "it knowingly, or use the default (verified) mode",
            )
        return self

    @property
    def effective_tls_mode(self) -> str:
        return self.tls_mode or ("true" if self.engine == "mysql" else "verify-full")

    @property
    def effective_port(self) -> int:
        return self.port or (3306 if self.engine == "mysql" else 5432)

    @property
    def host_platform(self) -> Platform:
        return platform_for(self.platform)

    @property
    def effective_service(self) -> str:
        p = self.host_platform
        return self.service or (p.mysql_service if self.engine == "mysql" else p.postgres_service)

    @property
    def effective_config_dir(self) -> str:
        p = self.host_platform
        return self.config_dir or (p.mysql_config_dir if self.engine == "mysql" else p.postgres_config_dir)

    @property
    def effective_tls_dir(self) -> str:
        return self.tls_dir or f"{self.effective_config_dir}/mattermost-tls"

    @property
    def inventory_host(self) -> str:
        return self.host or ("mariadb" if self.engine == "mysql" else "postgres")


class Cluster(Model):
    """App <-> app cluster encryption (SSH tunnel mesh + gossip encryption)."""

    enabled: bool = False
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "mattermost"
    gossip_port: Port = 8074
    streaming_port: Port | None = None
    """Also tunnel this port (8075 on Mattermost < 6; unused since v6)."""
    tunnel_port_base: Port = 28000
    tunnel_user: Account = "mmtunnel"
    gossip_encryption: bool = True


class Integration(Model):
    """What every integration host (GitLab, the Teleport plugin) has: off unless enabled, its
    inventory name, how to reach it and its OS family."""

    enabled: bool = False
    host: Name
    """Inventory host name (lab); part of resource names."""
    address: Address | None = None
    ssh: HostSsh = HostSsh()
    platform: PlatformName = "debian"
    """The host's OS family (components/platform.py): its paths, units and trust-store command."""


class Gitlab(Integration):
    """GitLab Omnibus with its bundled Mattermost (GitLab 18.x and older; removed in GitLab 19.0)."""

    host: Name = "gitlab"
    version: Version = "18.5.0"
    """GitLab's version on the host: 19.0 removed the bundled Mattermost."""
    mattermost_external_url: str = "https://mattermost.example.com"
    """https://<host>[:port] of the bundled Mattermost; the host name goes into the certificate."""
    tls_source: Literal["ca", "provided"] = "ca"
    """'ca': certificate from the stack CA; 'provided': certificate in `tlsCert`, key in secret `gitlabTlsKey`."""
    tls_cert: PemCert | None = None
    external_postgres: bool = True
    """Point the bundled Mattermost at the stack's PostgreSQL over verified TLS; false keeps
    Omnibus' own PostgreSQL (local socket, no network hop)."""
    sslmode: str | None = None
    """sslmode of that DSN: default the database's tlsMode; 'verify-full', 'verify-ca' or 'require'."""
    allow_unverified_tls: bool = False
    """Set true to accept sslmode 'require' (encrypts without verifying the server)."""
    database_name: SqlIdent = "gitlab_mattermost"
    """With externalPostgres: the bundled Mattermost's own database on the stack's PostgreSQL
    (created if missing, dropped by destroy if this program created it); never database.name."""
    database_user: SqlIdent = "gitlab_mmuser"
    """With externalPostgres: its own role (created if missing, password generated, TLS only);
    never database.user."""
    gitlab_rb: AbsPath = "/etc/gitlab/gitlab.rb"
    ssl_dir: AbsPath = "/etc/gitlab/ssl"
    ca_file: AbsPath = "/etc/gitlab/trusted-certs/mattermost-transport-ca.crt"
    """The stack CA on the GitLab host: the DSN's sslrootcert; in trusted-certs, reconfigure also
    adds it to Omnibus' trust store (the bundled Mattermost's SSL_CERT_DIR, GitLab's own calls)."""

    @field_validator("mattermost_external_url")
    @classmethod
    def _https_url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        if v.lower().startswith("http://"):
            raise ValueError(
                f"{v!r} is plain HTTP: this program serves the bundled Mattermost over HTTPS, so use "
                f"{'https://' + v[7:]!r}"
            )
        try:
            u = urlsplit(v)
            port = u.port
        except ValueError as e:
            raise ValueError(f"{v!r} is not a URL ({e})") from None
        if u.scheme != "https" or not u.hostname or u.username or u.password or u.query or u.fragment or u.path not in ("", "/"):
            raise ValueError(f"{v!r} is not of the form https://<host>[:<port>] (no path, user, query or fragment)")
        host = _address(u.hostname)
        return f"https://{f'[{host}]' if ':' in host else host}" + (f":{port}" if port else "")

    @field_validator("sslmode")
    @classmethod
    def _known_sslmode(cls, v: str | None) -> str | None:
        if v == "required":
            raise ValueError(
                "'required' is not a PostgreSQL sslmode (lib/pq rejects it with 'unsupported sslmode'): "
                "use 'verify-full' (recommended) or 'require'"
            )
        if v is not None and v not in POSTGRES_SSLMODES:
            raise ValueError(f"{v!r} is not an sslmode this program accepts: use one of {', '.join(POSTGRES_SSLMODES)}")
        return v

    @model_validator(mode="after")
    def _gitlab_checks(self) -> Gitlab:
        if self.enabled and version_tuple(self.version) >= (19, 0, 0):
            raise at_key(
                "gitlab.version",
                f"GitLab {self.version} has no bundled Mattermost (removed in 19.0): run Mattermost standalone with "
                "this program's nodes, proxy and database sections and set gitlab.enabled to false",
            )
        if self.sslmode == "require" and not self.allow_unverified_tls:
            raise at_key(
                "gitlab.sslmode",
                "'require' encrypts without verifying the server; set gitlab.allowUnverifiedTls: true to choose it "
                "knowingly, or use 'verify-full'",
            )
        if self.tls_cert is not None and not self._cert_covers_host():
            raise at_key(
                "gitlab.tlsCert",
                f"the certificate does not name {self.mattermost_host} (the host of gitlab.mattermostExternalUrl) "
                "in its subjectAltName; browsers would refuse it",
            )
        return self

    @property
    def mattermost_host(self) -> str:
        """Host name (or address) of mattermost_external_url."""
        from urllib.parse import urlsplit

        return urlsplit(self.mattermost_external_url).hostname or ""

    def _cert_covers_host(self) -> bool:
        from cryptography import x509

        assert self.tls_cert is not None
        leaf = x509.load_pem_x509_certificates(self.tls_cert.encode())[0]
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        host = self.mattermost_host
        try:
            ip = ipaddress.ip_address(host)
            return ip in san.get_values_for_type(x509.IPAddress)
        except ValueError:
            pass
        for name in san.get_values_for_type(x509.DNSName):
            name = name.lower()
            if name == host or (name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]):
                return True
        return False

    def key_matches_cert(self, key_pem: str) -> bool:
        """True if the private key `key_pem` belongs to tls_cert (never echoes the key)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        assert self.tls_cert is not None
        try:
            key = serialization.load_pem_private_key(key_pem.strip().encode(), password=None)
        except Exception:  # noqa: BLE001 - cryptography raises several types; the caller reports it
            return False
        leaf = x509.load_pem_x509_certificates(self.tls_cert.encode())[0]
        spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        return bool(key.public_key().public_bytes(*spki) == leaf.public_key().public_bytes(*spki))


class Teleport(Integration):
    """The Teleport Mattermost access-request plugin."""

    host: Name = "plugin"
    auth_addr: HostPort = "teleport.example.com:443"
    """[teleport] addr: the Auth Service (:3025) or Proxy Service (:443/:3080) address."""
    identity_file: AbsPath = "/var/lib/teleport/plugins/mattermost/auth_id"
    """[teleport] identity: the plugin's identity file (refreshed by the plugin)."""
    mattermost_url: str | None = None
    """[mattermost] url the plugin posts to; default https://<proxy.serverName>."""
    recipients: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["town-square/access-requests"]
    )
    """Where requests go: 'team/channel' (URL names) or a user's email."""
    log_output: str = "stderr"
    """[log] output: 'stdout', 'stderr' or an absolute file path."""
    log_severity: Literal["DEBUG", "INFO", "WARN", "ERROR"] = "INFO"
    config_file: AbsPath = "/etc/teleport-mattermost.toml"
    binary: AbsPath = "/usr/local/bin/teleport-mattermost"
    ca_dir: AbsPath = "/etc/teleport-mattermost/ca"
    """Holds only the stack CA; the unit's SSL_CERT_DIR adds it to the plugin's roots."""
    rbac: bool = False
    """Also install the Teleport RBAC resources (roles and user) as YAML for `tctl create -f`."""
    rbac_dir: AbsPath = "/etc/teleport-mattermost/rbac"

    @field_validator("mattermost_url")
    @classmethod
    def _https_url(cls, v: str | None) -> str | None:
        from urllib.parse import urlsplit

        if v is None:
            return v
        try:
            u = urlsplit(v)
            u.port  # noqa: B018 - raises on a bad port
        except ValueError as e:
            raise ValueError(f"{v!r} is not a URL ({e})") from None
        if u.scheme != "https":
            raise ValueError(f"{v!r} must start with https:// (the bot token must not cross the network in clear text)")
        if not u.hostname or u.username or u.password or u.query or u.fragment or not re.fullmatch(r"[A-Za-z0-9._~/-]*", u.path):
            raise ValueError(f"{v!r} is not of the form https://<host>[:<port>][/<path>]")
        _address(u.hostname)
        return v.rstrip("/")

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, v: list[str]) -> list[str]:
        team_channel = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}/[a-z0-9][a-z0-9_-]{0,63}$")
        email = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
        for i, r in enumerate(v):
            if not (team_channel.match(r) or email.match(r)):
                raise at_key(
                    f"teleport.recipients[{i}]",
                    f"{r!r} is neither 'team/channel' (the team's and channel's URL names, lowercase) nor an email address",
                )
        return v

    @field_validator("log_output")
    @classmethod
    def _log_output(cls, v: str) -> str:
        return v if v in ("stdout", "stderr") else _abs_path(v)

    def effective_mattermost_url(self, proxy_server_name: str) -> str:
        return self.mattermost_url or f"https://{proxy_server_name}"


class StackConfig(Model):
    """Everything the program needs, validated and with inventory merged in."""

    ssh: SshDefaults = SshDefaults()
    ssh_private_key: SecretStr
    ca: Ca = Ca()
    mattermost: MattermostDefaults = MattermostDefaults()
    nodes: Annotated[list[Node], Field(min_length=1, max_length=200)]
    proxy: Proxy = Proxy()
    database: Database = Database()
    db_password: SecretStr | None = None
    db_admin_password: SecretStr | None = None
    proxy_tls_key: SecretStr | None = None
    cluster: Cluster = Cluster()
    gitlab: Gitlab = Gitlab()
    teleport: Teleport = Teleport()
    teleport_token: SecretStr | None = None
    gitlab_tls_key: SecretStr | None = None

    @field_validator("ssh_private_key")
    @classmethod
    def _key_parses(cls, v: SecretStr) -> SecretStr:
        _check_private_key(v.get_secret_value())
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> StackConfig:
        _unique("nodes", [n.name for n in self.nodes], "name")
        for i, n in enumerate(self.nodes):
            if n.address is None:
                raise at_key(f"nodes[{i}].address", "missing: every node needs its IP address")
            if n.ssh.host_key is None:
                raise at_key(f"nodes[{i}].ssh.hostKey", _HOSTKEY_MISSING)
            _check_pin(f"nodes[{i}].ssh.hostKey", n.ssh, n.address, self.ssh.port)
            if self.version_of(n) >= (11, 0, 0) and self.database.engine == "mysql":
                raise at_key(
                    "database.engine",
                    f"node {n.name} runs Mattermost {self.version_of(n)[0]}.x, which no longer supports MySQL "
                    "(support ended with v11; v10.11 ESR was the last): use engine 'postgres'",
                )
        _unique("nodes", [n.address for n in self.nodes], "address")
        if self.cluster.enabled:
            # one cluster runs one version: nodes cannot mix gossip-encryption setting names
            first = self.node_setting(self.nodes[0], "version")
            for i, n in enumerate(self.nodes):
                if self.version_of(n) != version_tuple(first):
                    raise at_key(
                        f"nodes[{i}].version",
                        f"node {n.name} says {self.node_setting(n, 'version')} but {self.nodes[0].name} says {first}: "
                        "one cluster runs one Mattermost version; upgrade all nodes, then set mattermost.version "
                        "(and remove the per-node versions)",
                    )
        for key, section in (("proxy", self.proxy), ("database", self.database)):
            if section.address is None:
                raise at_key(f"{key}.address", "missing: the host's address is required")
            if section.ssh.host_key is None:
                raise at_key(f"{key}.ssh.hostKey", _HOSTKEY_MISSING)
            _check_pin(f"{key}.ssh.hostKey", section.ssh, section.address, self.ssh.port)
        _check_replicas(self)
        if self.proxy.address in {n.address for n in self.nodes}:
            raise at_key("proxy.address", "the proxy must not be one of the nodes (they would share port 443/8065 roles)")
        if self.proxy.tls.source == "provided" and (self.proxy.tls.cert is None or self.proxy_tls_key is None):
            raise at_key(
                "proxy.tls",
                "source 'provided' needs proxy.tls.cert and the secret key proxyTlsKey "
                f"(`{SECRET_SET_COMMANDS['proxyTlsKey']}`)",
            )
        if self.database.admin_user and self.db_admin_password is None:
            raise at_key("dbAdminPassword", f"database.adminUser is set: set its password with `{SECRET_SET_COMMANDS['dbAdminPassword']}`")
        for key, optional in (("gitlab", self.gitlab), ("teleport", self.teleport)):
            if optional.enabled:
                if optional.address is None:
                    raise at_key(f"{key}.address", "missing: the host's address is required")
                if optional.ssh.host_key is None:
                    raise at_key(f"{key}.ssh.hostKey", _HOSTKEY_MISSING)
                _check_pin(f"{key}.ssh.hostKey", optional.ssh, optional.address, self.ssh.port)
        for key, secret in (("dbPassword", self.db_password), ("dbAdminPassword", self.db_admin_password)):
            if secret is not None:
                try:
                    check_password(secret.get_secret_value(), key)
                except ValueError as e:
                    raise at_key(key, str(e).split(": ", 1)[-1]) from None
        if self.teleport.enabled and self.teleport_token is None:
            raise at_key("teleportToken", f"missing: set the Mattermost bot token with `{SECRET_SET_COMMANDS['teleportToken']}`")
        if self.teleport.enabled:
            token = self.teleport_token.get_secret_value() if self.teleport_token else ""
            # the plugin reads a token starting with "/" as a file path; never echo the value
            if token.startswith("/") or not token or any(c.isspace() or not c.isprintable() for c in token):
                raise at_key("teleportToken", "not a Mattermost bot token (one word, no spaces; a leading '/' would be read as a file path)")
        if self.gitlab.enabled and self.gitlab.external_postgres and self.database.engine != "postgres":
            raise at_key(
                "gitlab.externalPostgres",
                "the bundled Mattermost can use the stack's database only with database.engine postgres; "
                "set gitlab.externalPostgres: false to keep Omnibus' own PostgreSQL",
            )
        if self.gitlab.enabled and self.gitlab.external_postgres:
            _check_gitlab_database_apart(self.gitlab, self.database)
        if self.gitlab.enabled and self.gitlab.tls_source == "provided":
            if self.gitlab.tls_cert is None or self.gitlab_tls_key is None:
                raise at_key(
                    "gitlab.tlsSource",
                    "'provided' needs gitlab.tlsCert and the secret key gitlabTlsKey "
                    f"(`{SECRET_SET_COMMANDS['gitlabTlsKey']}`)",
                )
            if not self.gitlab.key_matches_cert(self.gitlab_tls_key.get_secret_value()):
                raise at_key("gitlabTlsKey", "is not an unencrypted PEM private key belonging to gitlab.tlsCert")
        _check_resource_names(self)
        return self

    def node_setting(self, node: Node, field: str) -> Any:
        """A node's own value, else the `mattermost` default."""
        own = getattr(node, field)
        return own if own is not None else getattr(self.mattermost, field)

    def version_of(self, node: Node) -> tuple[int, int, int]:
        return version_tuple(self.node_setting(node, "version"))


def _check_gitlab_database_apart(gl: Gitlab, db: Database) -> None:
    """GitLab's bundled Mattermost and the nodes are two Mattermost sites: sharing one database
    (one schema) or one role (one password, one set of pg_hba lines) on the one server would let
    each break the other. Names compare case-insensitively: stricter than PostgreSQL's quoted
    identifiers, never kinder."""
    for key, field, node_key in (
        ("gitlab.databaseName", "database_name", "database.name"),
        ("gitlab.databaseUser", "database_user", "database.user"),
    ):
        mine, theirs = getattr(gl, field), getattr(db, node_key.split(".")[1])
        if mine.lower() == theirs.lower():
            default = str(Gitlab.model_fields[field].default)
            hint = default if default.lower() != theirs.lower() else f"gitlab_{theirs}"
            raise at_key(
                key,
                f"{mine!r} is the nodes' {node_key} on the same PostgreSQL server ({db.address}): GitLab's bundled "
                f"Mattermost needs its own; set {key} to another name (e.g. {hint!r})",
            )


_HOSTKEY_MISSING = (
    "missing: pin the host's SSH host key (e.g. the content of /etc/ssh/ssh_host_ed25519_key.pub); "
    "without it the provider would accept any host"
)


# ---------------------------------------------------------------- resource names


def helper_name(host: str, port: int) -> str:
    """The host helper resource's name (components/host_helper.py registers it under this one):
    the host's stable identity, its SSH address and port."""
    return f"host-helper-{host}" + ("" if port == 22 else f"-{port}")


UPLOAD_SUFFIX = "-upload"
"""The helper's upload (a CopyToRemote) is named after its install: `host-helper-<address>-upload`."""
COPY_SUFFIX = "-copy"
"""A node host's copy of the helper in the login user's home, which the node's preflight reads
its check from, is removed on destroy by `host-helper-<address>-copy` (a delete only)."""


def planned_resource_names(cfg: StackConfig) -> list[tuple[str, str, str]]:
    """Every Pulumi resource name the program registers for `cfg`, as (name, config key that puts
    it there, what it is). Mirrors the name f-strings of components/*.py (deployment.py among them);
    tests/program/test_resource_names.py compares it with the names the real program registers,
    so a component that names a resource differently fails that test until this follows."""
    names: list[tuple[str, str, str]] = []

    def add(key: str, what: str, *resources: str) -> None:
        names.extend((r, key, what) for r in resources)

    def server_cert(prefix: str) -> tuple[str, ...]:  # Pki.issue_server_cert(name): key, csr, cert
        return (f"{prefix}-key", f"{prefix}-csr", f"{prefix}-cert")

    add("nodes", "the Deployment component, every resource's parent", "deployment")  # components/deployment.py
    add("ca", "the stack CA", "pki")  # components/pki.py
    for gen in cfg.ca.trusted:
        add("ca.generation", f"CA generation {gen}", f"{ca_prefix(gen)}-key", f"{ca_prefix(gen)}-cert")
    db = cfg.database  # components/database.py
    add("database", "the database", "database", *server_cert("database-server"), "database-server-tls")
    if db.engine == "postgres":
        add("database", "the database", "database-pg-hba")
    if cfg.db_password is None and db.rotate_password:
        add("database.rotatePassword", "the generated database password", "database-password")
        # the rotation's own login (components/database.py, password rotation)
        add("database.rotatePassword", "the rotation's login", "database-login", f"database-login-{db.user}",
            f"database-retire-{db.user}", *(("database-login-hba",) if db.engine == "postgres" else ()))
    elif cfg.db_password is None:
        add("dbPassword", "the read of the site's current database password", "database-current-password")
    add("database.user", "the database user", f"database-db-user-{db.user}-owner", f"database-db-user-{db.user}")
    add("database", "the database", "database-tls-enforced", "database-enforce-tls")
    if db.engine == "mysql" and db.admin_user is None:  # components/database.py database_preflight
        add("database.user", "the check of the database user's accounts", "database-accounts", "database-accounts-checked")
    if db.engine == "mysql":
        add("database.user", "the database user", f"database-enforce-tls-user-{db.user}")
    from components.db_replicas_render import replica_servers  # pure; late: it imports this schema

    for key, server in replica_servers(cfg):  # components/db_replicas.py
        p = f"database-replica-{server.label}"
        add(key, f"the replica {server.address}", p, *server_cert(f"{p}-server"), f"{p}-server-tls", f"{p}-pg-hba", f"{p}-tls-enforced", f"{p}-enforce-tls")
    if any(cfg.node_setting(n, "config_store") == "database" for n in cfg.nodes):
        add("mattermost.configStore", "the check of the database-stored configuration", "database-config-store-preflight")
    if cfg.cluster.enabled:  # components/cluster.py
        shared = ("public-keys", "sshd-ready", "mesh-ready", "gossip-stopped")
        add("cluster", "the cluster mesh", "cluster", *(f"cluster-{k}" for k in shared))
        for i, n in enumerate(cfg.nodes):
            kinds = ("ssh-key", "account", "client-key", "firewall", "tunnels", "gossip-mode")
            add(f"nodes[{i}].name", f"node {n.name}'s cluster setup", *(f"{n.name}-cluster-{k}" for k in kinds))
    add("proxy", "the proxy", "proxy")  # components/nginx.py
    if cfg.proxy.tls.source in ("ca", None):  # unset: decided on the live site, the CA cert is issued either way
        add("proxy", "the proxy", *server_cert("proxy-public"))
    add("proxy", "the proxy", "proxy-live-site", "proxy-transition", "proxy-final-site", "proxy-site")
    for i, n in enumerate(cfg.nodes):  # components/node.py
        add(f"nodes[{i}].name", f"node {n.name}", n.name, *server_cert(f"{n.name}-server"), f"{n.name}-db-ca", f"{n.name}-tls-files")
        add(f"nodes[{i}].name", f"node {n.name}'s preflight", f"{n.name}-preflight")  # components/node.py node_preflight
    add("nodes", "the barrier after every node's preflight", "preflights-passed")  # components/node.py
    gl = cfg.gitlab  # components/gitlab.py
    if gl.enabled:
        add("gitlab", "GitLab", "gitlab")
        if gl.tls_source == "ca":
            add("gitlab.host", "GitLab's certificate", *server_cert(f"{gl.host}-gitlab-mattermost"))
        add("gitlab.host", "GitLab's files", f"{gl.host}-gitlab-tls-files", f"{gl.host}-gitlab-rb")
        if gl.external_postgres:  # components/database.py Database._gitlab
            user = f"database-gitlab-db-user-{gl.database_user}"
            add("gitlab.databaseUser", "GitLab's database role", "database-gitlab-password", f"{user}-owner", user)
            add("gitlab", "GitLab's database access", "database-gitlab-pg-hba", "database-gitlab-tls-enforced", "database-gitlab-enforce-tls")
    tp = cfg.teleport  # components/teleport.py
    if tp.enabled:
        add("teleport", "the Teleport plugin", "teleport")
        add("teleport.host", "the Teleport plugin's files", f"{tp.host}-teleport-mattermost-files", f"{tp.host}-teleport-mattermost-enable")
    # components/host_helper.py: one helper per host connected to (connection_for's address/port)
    hosts = [("database", db.address, db.ssh), ("proxy", cfg.proxy.address, cfg.proxy.ssh)]
    hosts += [(key, server.address, server.ssh) for key, server in replica_servers(cfg)]
    hosts += [(f"nodes[{i}]", n.address, n.ssh) for i, n in enumerate(cfg.nodes)]
    if gl.enabled:
        hosts.append(("gitlab", gl.address, gl.ssh))
    if tp.enabled:
        hosts.append(("teleport", tp.address, tp.ssh))
    helpers: set[str] = set()
    for key, address, ssh in hosts:
        if address is None:
            continue
        helper = helper_name(ssh.address or address, ssh.port or cfg.ssh.port)
        if helper not in helpers:
            helpers.add(helper)
            add(key, "the host helper", helper, helper + UPLOAD_SUFFIX)
    copies: set[str] = set()
    for i, n in enumerate(cfg.nodes):  # the preflights' (node_preflight)
        if n.address is None:
            continue
        helper = helper_name(n.ssh.address or n.address, n.ssh.port or cfg.ssh.port)
        if helper not in copies:
            copies.add(helper)
            add(f"nodes[{i}]", "the removal of the host helper's copy", helper + COPY_SUFFIX)
    return names


def _check_replicas(cfg: StackConfig) -> None:
    """Replica servers: reachable (address, pinned host key), PostgreSQL only, none is the primary
    or a node. One server may serve both lists (one set of resources for it)."""
    db = cfg.database
    for list_key, replicas in (("database.replicas", db.replicas), ("database.searchReplicas", db.search_replicas)):
        seen: set[str] = set()
        for i, rep in enumerate(replicas):
            key = f"{list_key}[{i}]"
            if db.engine != "postgres":
                raise at_key(
                    list_key,
                    "read replicas are supported with database.engine postgres only (the MySQL replica's "
                    "REQUIRE SSL and server TLS are not managed): remove the list, or keep the replicas out of the stack",
                )
            if rep.address is None:
                raise at_key(f"{key}.address", "missing: the replica's address is required")
            if rep.ssh.host_key is None:
                raise at_key(f"{key}.ssh.hostKey", _HOSTKEY_MISSING)
            _check_pin(f"{key}.ssh.hostKey", rep.ssh, rep.address, cfg.ssh.port)
            if rep.address in seen:
                raise at_key(f"{key}.address", f"{rep.address} is listed twice in {list_key}")
            seen.add(rep.address)
            if rep.address == db.address or rep.address in {n.address for n in cfg.nodes}:
                raise at_key(f"{key}.address", f"{rep.address} is the primary database or a node, not a replica")
    first = cfg.nodes[0]
    if cfg.node_setting(first, "config_store") == "database" and cfg.db_password is None and not db.rotate_password:
        raise at_key(
            "dbPassword",
            f"node {first.name} keeps its configuration in the database, so the site's current password cannot be "
            f"read from its files: set it with `{SECRET_SET_COMMANDS['dbPassword']}` (or list a node with a "
            "config file first)",
        )


def _check_resource_names(cfg: StackConfig) -> None:
    """Two resources with one name would collide in the engine (and in the hosts' owner ledgers,
    which record the resource name): refuse the config key that made the second one."""
    seen: dict[str, tuple[str, str]] = {}
    clashes: list[tuple[str, str, str, tuple[str, str]]] = []
    for name, key, what in planned_resource_names(cfg):
        if name in seen:
            clashes.append((name, key, what, seen[name]))
        else:
            seen[name] = (key, what)
    if not clashes:
        return
    # blame a node name over a fixed name: that is what the user chose
    name, key, what, (other_key, other_what) = next((c for c in clashes if c[1].startswith("nodes[")), clashes[0])
    if not key.startswith("nodes[") and other_key.startswith("nodes["):
        key, what, other_key, other_what = other_key, other_what, key, what
    raise at_key(
        key,
        f"gives {what} the resource name {name!r}, which {other_what} also has ({other_key}); "
        "resource names must be unique: choose another name",
    )


def _check_pin(key: str, ssh: HostSsh, address: str | None, default_port: int) -> None:
    """Refuse a pin pulumi-command cannot use. With `hostKey` set, its SSH client offers only the
    pinned key's own algorithm (pulumi-command provider/pkg/provider/remote/connection.go,
    `SSHConfig`: HostKeyAlgorithms = [publicKey.Type()]); for an RSA key that is `ssh-rsa`
    (SHA-1 signatures), which OpenSSH >= 8.8 no longer accepts, so every connection would fail."""
    if ssh.host_key is None or not ssh.host_key.startswith("ssh-rsa "):
        return
    host = ssh.address or address or "HOST"
    port = ssh.port or default_port
    keyscan = f"ssh-keyscan -t ed25519{f' -p {port}' if port != 22 else ''} {host}"
    raise at_key(
        key,
        "is an RSA key: pulumi-command pins by offering only the pinned key's own algorithm, for RSA "
        "'ssh-rsa' (SHA-1), which OpenSSH >= 8.8 refuses ('no common algorithm for host key'). Pin the "
        "host's ed25519 key instead: run `cat /etc/ssh/ssh_host_ed25519_key.pub` on the host (or "
        f"`{keyscan}`, compared with it) and use its first two fields",
    )



def _unique(section: str, values: list[Any], field: str) -> None:
    seen: dict[Any, int] = {}
    for i, v in enumerate(values):
        if v in seen:
            raise at_key(f"{section}[{i}].{field}", f"{v!r} is used twice (also {section}[{seen[v]}].{field})")
        seen[v] = i


def _check_private_key(pem: str) -> None:
    from components.ssh_keys import load_private_key

    try:
        load_private_key(pem)
    except (ValueError, TypeError, Exception) as e:  # noqa: BLE001 - cryptography raises several types
        # never echo the value itself
        raise ValueError(f"the private key does not parse ({type(e).__name__}); expected an unencrypted PEM or OpenSSH key") from None



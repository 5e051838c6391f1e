"""What differs between OS families: one `Platform` description per family, chosen per host.

Every path, unit name, command and package name the renderers use that Debian/Ubuntu chose
(and another family may choose differently) is read from the host's `Platform` instead of being
written into a renderer: the system trust store (its source dir, the command that rebuilds it,
the directory of links and the bundle it writes), where PostgreSQL and MariaDB keep their config
and how their units are named, the sshd drop-in dir and unit names, the firewall tools, the
NGINX unit and the package names the error messages suggest. What every supported host has in
common (systemd, POSIX sh, OpenSSH, iptables-restore's rule format) stays in the renderers.

Adding a family: one more `Platform(...)` here, registered in `PLATFORMS`, and a lab image of
that family (lab/build-base.sh) to prove it on real hosts. A host picks its family with the
config key `<host>.platform` (default "debian"). Pure: no Pulumi, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

STATE_DIR = "/var/lib/mattermost-transport-encryption"
"""The program's state directory on every host (the host helper's backups and owner ledger, the
database users' saved state, the cluster account marker); shared by every OS family."""

_TEXT = re.compile(r"^[A-Za-z0-9 ._/@{}+:-]*$")
_WORD = re.compile(r"^[A-Za-z0-9._@+-]+$")


@dataclass(frozen=True)
class Platform:
    """One OS family's paths, units, commands and package names."""

    name: str
    """The config value that selects it (`<host>.platform`)."""
    description: str
    label: str
    """How error messages name the family ("Debian: apt-get install ...")."""
    # ---- system trust store
    system_ca_dir: str
    """Where a local CA certificate is dropped for the trust-store command to pick up."""
    system_ca_suffix: str
    """The file suffix the trust-store command reads in `system_ca_dir`."""
    trust_update: str
    """The command that rebuilds the system trust store from `system_ca_dir`."""
    trust_package: str
    """The package that provides `trust_update`."""
    system_cert_dir: str
    """The hashed directory of trusted certificates (OpenSSL's and Go's SSL_CERT_DIR)."""
    trust_link_suffix: str
    """`trust_update` links `<name><trust_link_suffix>` in `system_cert_dir` to each local CA."""
    system_bundle: str
    """The bundle FILE of every trusted CA that `trust_update` writes."""
    # ---- PostgreSQL
    postgres_service: str
    postgres_config_dir: str
    """The default cluster's config dir."""
    postgres_cluster_dir: re.Pattern[str]
    """A cluster's config dir; groups 1 and 2: its version and cluster name."""
    postgres_cluster_unit: str
    """The cluster's own unit, `{version}` and `{cluster}` filled from `postgres_cluster_dir`."""
    postgres_cluster_log: str
    """The cluster's log file, filled as `postgres_cluster_unit`."""
    postgres_socket_dir: str
    postgres_user: str
    """The OS user the PostgreSQL server runs as (owns its key; the local admin over the socket)."""
    # ---- MySQL / MariaDB
    mysql_service: str
    mysql_config_dir: str
    """The server's conf.d, read after the packaged defaults."""
    mysql_server_binaries: tuple[str, ...]
    """The server binary names, first found wins (MariaDB's, then MySQL's)."""
    mysql_user: str
    """The OS user the MySQL/MariaDB server runs as (owns its key)."""
    # ---- NGINX
    nginx_service: str
    nginx_site_file: str
    nginx_tls_dir: str
    # ---- sshd
    sshd_dropin_dir: str
    """Read by the distribution's sshd_config through `Include <dir>/*.conf`."""
    sshd_units: tuple[str, ...]
    """The names the sshd unit may have, tried in order."""
    # ---- firewall
    iptables: str
    iptables_restore: str
    firewall_units: tuple[str, ...]
    """Units that load the host's own firewall rules: ours load after them (After=)."""
    firewall_rule_files: tuple[str, ...]
    """Where the host's own firewall keeps rules: the cluster preflight looks there for the manual
    procedure's DNAT lines."""
    # ---- packages named in error messages
    install_hint: str
    """The command that installs packages, as an error message suggests it."""
    jq_package: str
    cluster_packages: tuple[str, ...]
    """What provides the cluster tunnels' tools (ssh, sshd, the firewall tools, ss, ps, useradd)."""

    def __post_init__(self) -> None:
        # the renderers put these values into shell and unit files as they are (the templates
        # take them as code): so every one is plain text, and the command names single words
        for f in fields(self):
            value = getattr(self, f.name)
            for v in value if isinstance(value, tuple) else (value,):
                if isinstance(v, str) and not _TEXT.match(v):
                    raise ValueError(f"Platform {self.name!r}: {f.name} {v!r} is not plain text")
        for word in (self.trust_update, self.postgres_user, self.mysql_user, self.iptables, self.iptables_restore, *self.sshd_units, *self.mysql_server_binaries):
            if not _WORD.match(word):
                raise ValueError(f"Platform {self.name!r}: {word!r} is not one command or unit name")

    def install(self, packages: tuple[str, ...] | str) -> str:
        """The command an error message suggests for installing `packages`."""
        names = (packages,) if isinstance(packages, str) else packages
        return f"{self.install_hint} {' '.join(names)}"

    def server_user(self, engine: str) -> str:
        """The OS user the `engine` ("mysql" or "postgres") server runs as."""
        return {"mysql": self.mysql_user, "postgres": self.postgres_user}[engine]

    def postgres_unit(self, config_dir: str) -> tuple[str, str] | None:
        """(the cluster's unit, its log file) when `config_dir` is one of this family's cluster dirs."""
        m = self.postgres_cluster_dir.match(config_dir.rstrip("/"))
        if not m:
            return None
        return (
            self.postgres_cluster_unit.format(version=m[1], cluster=m[2]),
            self.postgres_cluster_log.format(version=m[1], cluster=m[2]),
        )


DEBIAN = Platform(
    name="debian",
    description="Debian and Ubuntu",
    label="Debian",
    system_ca_dir="/usr/local/share/ca-certificates",
    system_ca_suffix=".crt",
    trust_update="update-ca-certificates",
    trust_package="ca-certificates",
    system_cert_dir="/etc/ssl/certs",
    trust_link_suffix=".pem",
    system_bundle="/etc/ssl/certs/ca-certificates.crt",
    postgres_service="postgresql",
    postgres_config_dir="/etc/postgresql/15/main",
    postgres_cluster_dir=re.compile(r"^/etc/postgresql/([0-9.]+)/([A-Za-z0-9_.-]+)$"),
    postgres_cluster_unit="postgresql@{version}-{cluster}",
    postgres_cluster_log="/var/log/postgresql/postgresql-{version}-{cluster}.log",
    postgres_socket_dir="/var/run/postgresql",
    postgres_user="postgres",
    mysql_service="mariadb",
    mysql_config_dir="/etc/mysql/mariadb.conf.d",
    mysql_server_binaries=("mariadbd", "mysqld"),
    mysql_user="mysql",
    nginx_service="nginx",
    nginx_site_file="/etc/nginx/conf.d/mattermost.conf",
    nginx_tls_dir="/etc/nginx/mattermost-tls",
    sshd_dropin_dir="/etc/ssh/sshd_config.d",
    sshd_units=("ssh.service", "sshd.service"),
    iptables="iptables",
    iptables_restore="iptables-restore",
    firewall_units=("ufw.service", "netfilter-persistent.service"),
    firewall_rule_files=("/etc/ufw/before.rules", "/etc/ufw/after.rules", "/etc/iptables/rules.v4"),
    install_hint="apt-get install",
    jq_package="jq",
    cluster_packages=("openssh-client", "openssh-server", "iptables", "iproute2", "procps", "passwd"),
)

PLATFORMS: dict[str, Platform] = {DEBIAN.name: DEBIAN}
"""Every OS family the program supports, by the name `<host>.platform` takes."""


def platform_for(name: str) -> Platform:
    """The Platform called `name`; a ValueError naming the known ones otherwise."""
    try:
        return PLATFORMS[name]
    except KeyError:
        raise ValueError(
            f"unknown platform {name!r}: supported: {', '.join(sorted(PLATFORMS))} "
            "(another OS family needs its Platform description in components/platform.py)"
        ) from None

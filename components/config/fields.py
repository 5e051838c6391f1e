"""The config's restricted value types and shared constants: what a name, a path, an address,
a host key or a PEM may look like (characters that cannot break out of a shell script or a
config file), the project's secret keys and the error that names a key and its fix."""

from __future__ import annotations

import base64
import ipaddress
import re
import struct
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
)

from components.platform import platform_for

PROJECT = "mattermost-transport-encryption"

SECRET_KEYS = ("sshPrivateKey", "dbPassword", "dbAdminPassword", "proxyTlsKey", "teleportToken", "gitlabTlsKey")


class ConfigError(Exception):
    """A configuration value is wrong; the message names the key and the fix. A plain exception,
    so the config and the renderers stay free of Pulumi: __main__.py hands it to the Pulumi CLI
    as a RunError (printed as the message alone, no traceback)."""


# ---------------------------------------------------------------- restricted value types

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._/+-]*$")
_ACCOUNT_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_UNIT_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,200}$")
_DNS_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_SQL_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# [0-9], not \d: Python's \d also matches other scripts' digits, which int() accepts
_VERSION_RE = re.compile(r"^([0-9]{1,3})\.([0-9]{1,3})(?:\.([0-9]{1,4}))?$")
_HOSTKEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)


def _name(v: str) -> str:
    if not NAME_RE.match(v):
        raise ValueError(
            f"{v!r} is not a valid name: use 1-32 lowercase letters, digits and '-', starting with a "
            "letter (it becomes part of unit names, file names and resource names)"
        )
    return v


# Room below Linux' PATH_MAX (4096) and NAME_MAX (255) for what the program appends: file names
# inside configured directories and the `.mtm-new`/`.mtm-restore` siblings of every installed file.
PATH_MAX_CHARS = 1024
PATH_COMPONENT_MAX_CHARS = 200


def _abs_path(v: str) -> str:
    if not _PATH_RE.match(v) or "/../" in v + "/" or "//" in v or v.endswith("/.."):
        raise ValueError(
            f"{v!r} is not an absolute, plain path: start with '/', use letters, digits and . _ / + - only, no '..'"
        )
    if len(v) > PATH_MAX_CHARS:
        raise ValueError(f"the path is {len(v)} characters long; at most {PATH_MAX_CHARS} are allowed")
    longest = max(v.split("/"), key=len)
    if len(longest) > PATH_COMPONENT_MAX_CHARS:
        raise ValueError(
            f"the path component {longest[:40]!r}... is {len(longest)} characters long; at most "
            f"{PATH_COMPONENT_MAX_CHARS} are allowed per component"
        )
    return v.rstrip("/") or "/"


def _account(v: str) -> str:
    if not _ACCOUNT_RE.match(v):
        raise ValueError(f"{v!r} is not a valid user or group name (lowercase letters, digits, '_' and '-')")
    return v


def _unit(v: str) -> str:
    v = v.removesuffix(".service")
    if not _UNIT_RE.match(v):
        raise ValueError(f"{v!r} is not a valid systemd unit name (letters, digits and _ . @ - only)")
    return v


def _platform(v: str) -> str:
    platform_for(v)  # a ValueError naming the supported families otherwise
    return v


def _address(v: str) -> str:
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        pass
    if _DNS_RE.match(v) and not v.replace(".", "").isdigit():
        return v.lower()
    raise ValueError(f"{v!r} is neither an IP address nor a DNS name")


def _ip(v: str) -> str:
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise ValueError(f"{v!r} is not an IP address (Mattermost nodes need one: it goes into certificates and firewall rules)") from None


def _dns(v: str) -> str:
    if not _DNS_RE.match(v):
        raise ValueError(f"{v!r} is not a valid DNS name")
    return v.lower()


def _sql_ident(v: str) -> str:
    if not _SQL_IDENT_RE.match(v):
        raise ValueError(f"{v!r} is not a plain SQL identifier (letters, digits, '_', not starting with a digit)")
    return v


def _version(v: str) -> str:
    if not _VERSION_RE.match(str(v)):
        raise ValueError(f"{v!r} is not a Mattermost version like '10.11.3'")
    return str(v)


def _host_key(v: str) -> str:
    parts = v.strip().split()
    if len(parts) < 2 or parts[0] not in _HOSTKEY_TYPES:
        raise ValueError(
            "expected an SSH host public key in authorized_keys format, e.g. 'ssh-ed25519 AAAA...' "
            "(read it on the host from /etc/ssh/ssh_host_ed25519_key.pub)"
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (n,) = struct.unpack(">I", blob[:4])
        embedded = blob[4 : 4 + n].decode()
    except Exception:
        raise ValueError("the host key's base64 part does not decode") from None
    if embedded != parts[0]:
        raise ValueError(f"the host key says {parts[0]} but its data is a {embedded} key")
    return f"{parts[0]} {parts[1]}"


def _host_port(v: str) -> str:
    """`host:port` with an ASCII DNS name or IP (IPv6 in brackets) and a decimal port 1-65535."""
    if not v.isascii():
        raise ValueError(f"{v!r} has non-ASCII characters: use host:port with an ASCII DNS name or an IP address")
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or len(port) > 5 or not 1 <= int(port) <= 65535:
        raise ValueError(f"{v!r} is not host:port with a port 1-65535 (e.g. teleport.example.com:443)")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address in brackets") from None
        return f"[{ipaddress.IPv6Address(host[1:-1])}]:{int(port)}"
    if ":" in host:
        raise ValueError(f"{v!r}: write an IPv6 address in brackets, e.g. [2001:db8::1]:3025")
    return f"{_address(host)}:{int(port)}"


def _pem(v: str) -> str:
    if "-----BEGIN CERTIFICATE-----" not in v:
        raise ValueError("expected a PEM certificate (-----BEGIN CERTIFICATE-----)")
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(v.encode())
    except ValueError as e:
        raise ValueError(f"the PEM certificate does not parse: {e}") from None
    return v


Name = Annotated[str, AfterValidator(_name)]
AbsPath = Annotated[str, AfterValidator(_abs_path)]
Account = Annotated[str, AfterValidator(_account)]
Unit = Annotated[str, AfterValidator(_unit)]
Address = Annotated[str, AfterValidator(_address)]
PlatformName = Annotated[str, AfterValidator(_platform)]
"""A host's OS family, a key of components.platform.PLATFORMS."""
Ip = Annotated[str, AfterValidator(_ip)]
DnsName = Annotated[str, AfterValidator(_dns)]
SqlIdent = Annotated[str, AfterValidator(_sql_ident)]
Version = Annotated[str, AfterValidator(_version)]
HostKey = Annotated[str, AfterValidator(_host_key)]
Port = Annotated[int, Field(ge=1, le=65535)]
HostPort = Annotated[str, AfterValidator(_host_port)]
PemCert = Annotated[str, AfterValidator(_pem)]


def version_tuple(v: str) -> tuple[int, int, int]:
    m = _VERSION_RE.match(v)
    assert m, v
    return int(m[1]), int(m[2]), int(m[3] or 0)



# What to run when a secret the program needs is missing.
SECRET_SET_COMMANDS = {
    "sshPrivateKey": "pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519",
    "dbPassword": "pulumi config set --secret dbPassword",
    "dbAdminPassword": "pulumi config set --secret dbAdminPassword",
    "proxyTlsKey": "pulumi config set --secret proxyTlsKey < mattermost.example.com.key",
    "teleportToken": "pulumi config set --secret teleportToken",
    "gitlabTlsKey": "pulumi config set --secret gitlabTlsKey < gitlab-mattermost.key",
}


class KeyedError(ValueError):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def at_key(key: str, message: str) -> KeyedError:
    return KeyedError(key, message)


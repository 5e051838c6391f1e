"""Mattermost configuration as the stand-in reads it.

Owns: loading the configuration (``--config``, else ``MM_CONFIG``, else
``/opt/mattermost/config/config.json``): a file, or a database DSN for the
database config store (``dbstore``), Mattermost's defaults for the settings
the stand-in uses, ``MM_<SECTION>_<KEY>`` environment overrides (which win over
the file and the stored config, as in Mattermost) and the validation that makes
Mattermost refuse to start. The stand-in never writes a config FILE back; the
database store gets the loaded config without env overrides, as Store.Load does.

Which settings exist depends on the emulated version (the binary's own, ``mmstandin.VERSION``):
an ``MM_*`` name applies only where that version's ``model.Config`` has the field, and any other
name is ignored silently, exactly as Mattermost's ``applyEnvKey``
(server/config/environment.go) walks the struct by reflection and returns on the first part that
names no field. Its value rules are copied too: booleans through Go's ``strconv.ParseBool``,
integers through ``strconv.ParseInt`` (a value either cannot parse leaves the setting as it
was), lists split on single spaces, and a name with more parts than the field path still sets
the field (``MM_SQLSETTINGS_DATASOURCE_X`` sets ``DataSource``: the reflection stops at the
first leaf).
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from . import dbstore

DEFAULT_CONFIG_PATH = "/opt/mattermost/config/config.json"

# Mattermost's defaults for what the stand-in reads (model/config.go).
DEFAULTS: dict[str, dict[str, Any]] = {
    "ServiceSettings": {
        "SiteURL": "",
        "ListenAddress": ":8065",
        "ConnectionSecurity": "",
        "TLSCertFile": "",
        "TLSKeyFile": "",
        "TLSMinVer": "1.2",
        "TLSStrictTransport": False,
        "TLSStrictTransportMaxAge": 63072000,
        "TLSOverwriteCiphers": [],
        "UseLetsEncrypt": False,
        "ReadTimeout": 300,
        "WriteTimeout": 300,
        "IdleTimeout": 60,
    },
    "SqlSettings": {
        "DriverName": "postgres",
        "DataSource": "postgres://mmuser:mostest@localhost/mattermost_test?sslmode=disable&connect_timeout=10",
        "DataSourceReplicas": [],
        "DataSourceSearchReplicas": [],
        # pool settings: server/public/model/config.go SqlSettings.SetDefaults
        "MaxIdleConns": 20,
        "ConnMaxLifetimeMilliseconds": 3600000,
        "ConnMaxIdleTimeMilliseconds": 300000,
        "MaxOpenConns": 300,
        "QueryTimeout": 30,
    },
    "ClusterSettings": {
        "Enable": False,
        "ClusterName": "",
        "OverrideHostname": "",
        "NetworkInterface": "",
        "BindAddress": "",
        "AdvertiseAddress": "",
        "UseIPAddress": True,
        "EnableGossipCompression": True,
        "EnableExperimentalGossipEncryption": False,
        "EnableGossipEncryption": False,
        "ReadOnlyConfig": True,
        "GossipPort": 8074,
        "StreamingPort": 8075,
    },
    "LogSettings": {
        "EnableConsole": True,
        "ConsoleLevel": "INFO",
        "ConsoleJson": True,
        "EnableFile": True,
        "FileLocation": "",
    },
}

# Settings that exist only from (SINCE) or before (UNTIL) a version. PR 33349 (v10.11, MM-63652)
# made gossip encryption GA as ClusterSettings.EnableGossipEncryption and migrates the old
# value; whether the old field stays in the struct from v10.11 on is not verified here, so the
# stand-in is the stricter of the two: it knows only the new name from v10.11 on and only the
# old one before.
SINCE: dict[tuple[str, str], tuple[int, int, int]] = {
    ("ClusterSettings", "EnableGossipEncryption"): (10, 11, 0),
}
UNTIL: dict[tuple[str, str], tuple[int, int, int]] = {
    ("ClusterSettings", "EnableExperimentalGossipEncryption"): (10, 11, 0),
}

CONNECTION_SECURITY = ("", "TLS")
SQL_DRIVERS = ("postgres", "mysql")


class ConfigError(Exception):
    """A configuration Mattermost would refuse to start with; ``id`` is Mattermost's error id."""

    def __init__(self, id_: str, message: str) -> None:
        super().__init__(f"{message} ({id_})")
        self.id = id_
        self.message = message


@dataclass
class Config:
    """Effective settings: defaults < config.json < environment."""

    path: str
    data: dict[str, Any]
    from_env: dict[str, str] = field(default_factory=dict)  # "Section.Key" -> env var name
    store: dict[str, Any] | None = None  # the database config store (dbstore), None for a file

    def get(self, section: str, key: str) -> Any:
        """One effective setting."""
        return self.data.get(section, {}).get(key, DEFAULTS.get(section, {}).get(key))

    def section(self, section: str) -> dict[str, Any]:
        """A whole section with defaults filled in."""
        merged = copy.deepcopy(DEFAULTS.get(section, {}))
        merged.update(self.data.get(section, {}))
        return merged


def version_tuple(version: str) -> tuple[int, int, int]:
    """``"10.11.2"`` (or ``"10.11.2-standin"``) -> (10, 11, 2)."""
    parts = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if parts is None:
        raise ValueError(f"not a Mattermost version: {version!r}")
    return (int(parts.group(1)), int(parts.group(2)), int(parts.group(3) or 0))


def schema(version: str) -> dict[str, dict[str, Any]]:
    """The settings (with their defaults) the given version's ``model.Config`` has, of those the
    stand-in models."""
    v = version_tuple(version)
    out: dict[str, dict[str, Any]] = {}
    for section, keys in DEFAULTS.items():
        out[section] = {
            k: d
            for k, d in keys.items()
            if v >= SINCE.get((section, k), (0, 0, 0)) and v < UNTIL.get((section, k), (999, 0, 0))
        }
    return out


_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_GO_INT = re.compile(r"^[+-]?[0-9]+$")


def go_parse_bool(raw: str) -> bool | None:
    """strconv.ParseBool; None where Go returns an error."""
    if raw in _GO_TRUE:
        return True
    if raw in _GO_FALSE:
        return False
    return None


def _coerce(raw: str, like: Any) -> tuple[bool, Any]:
    """applyEnvKey's per-kind conversion: (applies, value)."""
    if isinstance(like, bool):
        b = go_parse_bool(raw)
        return (b is not None, b)
    if isinstance(like, int):
        # strconv.ParseInt(value, 10, 0): no spaces, no underscores, 64-bit range
        if not _GO_INT.match(raw) or not -(2**63) <= int(raw) < 2**63:
            return (False, None)
        return (True, int(raw))
    if isinstance(like, list):
        return (True, raw.split(" "))  # strings.Split(value, " "), not a whitespace split
    return (True, raw)


def apply_env(data: dict[str, Any], environ: dict[str, str], version: str) -> dict[str, str]:
    """Apply ``MM_*`` overrides to ``data`` in place as ``applyEnvKey`` does for ``version``;
    return what was set ("Section.Key" -> variable name). Unknown names change nothing."""
    known = schema(version)
    sections = {s.upper(): s for s in known}
    applied: dict[str, str] = {}
    for name, raw in sorted(environ.items()):
        upper = name.upper()  # config.GetEnvironment upper-cases every name starting with MM
        if not upper.startswith("MM"):
            continue
        rest = upper[3:] if upper.startswith("MM_") else upper  # strings.TrimPrefix(key, "MM_")
        section_part, _, key_rest = rest.partition("_")
        section = sections.get(section_part)
        if section is None or not key_rest:  # no such field, or a struct with nothing left
            continue
        key_part = key_rest.partition("_")[0]  # a leaf takes the value whatever parts follow
        keys = {k.upper(): k for k in known[section]}
        key = keys.get(key_part)
        if key is None:
            continue
        current = data.setdefault(section, {})
        if not isinstance(current, dict):
            continue
        ok, value = _coerce(raw, known[section][key])
        if not ok:
            continue
        current[key] = value
        applied[f"{section}.{key}"] = name
    return applied


def load(path: str | None = None, environ: dict[str, str] | None = None, version: str | None = None) -> Config:
    """Read and merge the configuration for ``version`` (default: the stand-in's own); raise
    ConfigError when it cannot be used."""
    from . import VERSION

    version = version or VERSION
    env = dict(os.environ if environ is None else environ)
    source = path or env.get("MM_CONFIG") or DEFAULT_CONFIG_PATH
    store = None
    if dbstore.is_database_dsn(source):
        # store.go NewStoreFromDSN -> database.go NewDatabaseStore + Store.Load: a store that
        # cannot be reached or read stops the server ("failed to create store")
        try:
            store = dbstore.DatabaseStore(source)
            raw = store.load()
            data = json.loads(raw) if raw is not None else store.initial()
        except dbstore.StoreError as exc:
            raise ConfigError("config.load_config.database_store", f"failed to create store: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError("utils.config.load_config.decoding.panic", f"failed to decode the active configuration: {exc}") from exc
        where = f"database {store.describe()}"  # never the DSN: it carries the password
    else:
        where = source
        try:
            with open(source, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as exc:
            raise ConfigError(
                "config.load_config.opening.panic", f"failed to load configuration from {source}: {exc}"
            ) from exc
        except json.JSONDecodeError as exc:
            raise ConfigError("utils.config.load_config.decoding.panic", f"failed to decode {source}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError("utils.config.load_config.decoding.panic", f"{where} is not a JSON object")
    # json.Unmarshal into this version's model.Config keeps only the fields it has
    known = schema(version)
    data = {
        section: {k: v for k, v in values.items() if k in known[section]}
        for section, values in data.items()
        if section in known and isinstance(values, dict)
    }
    if store is not None:
        # Store.Load writes the loaded config WITHOUT the environment overrides back (SetDefaults
        # filled in; skipped when its SHA equals the active row's): env values never reach the row
        try:
            store.persist(with_defaults(data, version))
        except dbstore.StoreError as exc:
            raise ConfigError("config.load_config.database_store", f"failed to persist: {exc}") from exc
    from_env = apply_env(data, env, version)
    cfg = Config(path=where, data=data, from_env=from_env, store=store.status() if store else None)
    validate(cfg)
    return cfg


def with_defaults(data: dict[str, Any], version: str) -> dict[str, Any]:
    """The config as SetDefaults leaves it: every field of this version's schema, in DEFAULTS order."""
    return {section: {**keys, **data.get(section, {})} for section, keys in schema(version).items()}


def validate(cfg: Config) -> None:
    """Mattermost's ``Config.IsValid`` for the settings the stand-in uses."""
    security = cfg.get("ServiceSettings", "ConnectionSecurity")
    if security not in CONNECTION_SECURITY:
        raise ConfigError(
            "model.config.is_valid.webserver_security.app_error",
            f"Invalid value for webserver connection security: {security!r}",
        )
    if security == "TLS" and not cfg.get("ServiceSettings", "UseLetsEncrypt"):
        for key, err_id, what in (
            ("TLSCertFile", "model.config.is_valid.tls_cert_file_missing.app_error", "certificate"),
            ("TLSKeyFile", "model.config.is_valid.tls_key_file_missing.app_error", "key"),
        ):
            value = cfg.get("ServiceSettings", key)
            if not value or not os.path.exists(value):
                raise ConfigError(
                    err_id,
                    f"Invalid value for TLS {what} file - ServiceSettings.{key}={value!r} does not exist; "
                    "refusing to start with ConnectionSecurity=TLS",
                )
    driver = cfg.get("SqlSettings", "DriverName")
    if driver not in SQL_DRIVERS:
        raise ConfigError(
            "model.config.is_valid.sql_driver.app_error", f"Invalid driver name {driver!r} for SQL settings"
        )
    if not cfg.get("SqlSettings", "DataSource"):
        raise ConfigError(
            "model.config.is_valid.sql_data_src.app_error", "Invalid data source for SQL settings. Must be set."
        )

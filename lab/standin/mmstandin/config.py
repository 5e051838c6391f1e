"""Mattermost configuration as the stand-in reads it.

Owns: loading ``config.json`` (path from ``--config``, else ``MM_CONFIG``, else
``/opt/mattermost/config/config.json``), Mattermost's defaults for the settings
the stand-in uses, ``MM_<SECTION>_<KEY>`` environment overrides (which win over
the file, as in Mattermost) and the validation that makes Mattermost refuse to
start. Like a file store with env overrides, the stand-in never writes the file
back.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from typing import Any

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
        "MaxIdleConns": 20,
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

    def get(self, section: str, key: str) -> Any:
        """One effective setting."""
        return self.data.get(section, {}).get(key, DEFAULTS.get(section, {}).get(key))

    def section(self, section: str) -> dict[str, Any]:
        """A whole section with defaults filled in."""
        merged = copy.deepcopy(DEFAULTS.get(section, {}))
        merged.update(self.data.get(section, {}))
        return merged


def _coerce(raw: str, like: Any) -> Any:
    """An env string converted to the type the setting has (Mattermost's rules)."""
    if isinstance(like, bool):
        return raw.strip().lower() == "true"
    if isinstance(like, int):
        try:
            return int(raw)
        except ValueError:
            return like
    if isinstance(like, list):
        # Mattermost splits list settings given in env on spaces.
        return raw.split()
    return raw


def apply_env(data: dict[str, Any], environ: dict[str, str]) -> dict[str, str]:
    """Apply ``MM_<SECTION>_<KEY>`` overrides to ``data`` in place; return what was set."""
    applied: dict[str, str] = {}
    sections = {s.upper(): s for s in list(DEFAULTS) + list(data)}
    for name, raw in sorted(environ.items()):
        if not name.startswith("MM_") or name == "MM_CONFIG":
            continue
        rest = name[3:]
        section_key, _, key_part = rest.partition("_")
        section = sections.get(section_key)
        if section is None or not key_part:
            continue
        current = data.setdefault(section, {})
        if not isinstance(current, dict):
            continue
        keys = {k.upper(): k for k in list(DEFAULTS.get(section, {})) + list(current)}
        key = keys.get(key_part)
        if key is None:
            continue
        like = current.get(key, DEFAULTS.get(section, {}).get(key, ""))
        current[key] = _coerce(raw, like)
        applied[f"{section}.{key}"] = name
    return applied


def load(path: str | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read and merge the configuration; raise ConfigError when it cannot be used."""
    env = dict(os.environ if environ is None else environ)
    source = path or env.get("MM_CONFIG") or DEFAULT_CONFIG_PATH
    if "://" in source:
        raise ConfigError(
            "standin.config.database_store",
            f"configuration stored in a database ({source.split('://')[0]}) is not supported by the stand-in",
        )
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
        raise ConfigError("utils.config.load_config.decoding.panic", f"{source} is not a JSON object")
    from_env = apply_env(data, env)
    cfg = Config(path=source, data=data, from_env=from_env)
    validate(cfg)
    return cfg


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

"""Configuration stored in the database, as Mattermost's database config store keeps it.

Owns: recognising a database DSN in ``MM_CONFIG``/``--config`` and splitting it into driver and
data source (server/config/database.go ``parseDSN``; server/config/store.go ``NewStoreFromDSN``
uses a database store for ``postgres://``, ``postgresql://`` and ``mysql://``), the
``Configurations`` table (``initializeConfigurationsTable``: the columns the stand-in uses),
``Load`` (the ``Active`` row's ``Value``; without one, a config holding only the driver name and
this data source) and ``persist`` (skipped when the SHA-256 of the value equals the active row's
``SHA``; else the active row is deactivated and a new one inserted, in one transaction).

Like ``NewDatabaseStore``, every operation opens a NEW connection with the DSN's TLS
(``SetMaxIdleConns(0)``): a config-store DSN that the server refuses stops the server.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
import time
from typing import Any

from . import dsn as dsnmod

SCHEMES = ("postgres", "postgresql", "mysql")


class StoreError(Exception):
    """The database store cannot be created or read; Mattermost exits with it."""


def is_database_dsn(source: str) -> bool:
    """server/config/utils.go IsDatabaseDSN: a postgres/postgresql/mysql URL."""
    return source.startswith(tuple(f"{s}://" for s in SCHEMES))


def parse_store_dsn(source: str) -> tuple[str, str]:
    """database.go parseDSN: (driver name, data source). mysql:// is stripped off; a PostgreSQL
    DSN is passed on unchanged; any other scheme is refused."""
    scheme, sep, rest = source.partition("://")
    if not sep:
        raise StoreError("invalid DSN: failed to parse DSN as URL")
    if scheme == "mysql":
        return "mysql", rest
    if scheme in ("postgres", "postgresql"):
        return "postgres", source
    raise StoreError(f"invalid DSN: unsupported scheme {scheme}")


def _new_id() -> str:
    """model.NewId: 26 lower-case base32 characters."""
    return "".join(random.choice(string.ascii_lowercase + "0123456789") for _ in range(26))


def marshal(data: dict[str, Any]) -> bytes:
    """marshalConfig: the whole config, indented (the stand-in's field order is its DEFAULTS order)."""
    return json.dumps(data, indent=4).encode()


class DatabaseStore:
    """A config store backed by the ``Configurations`` table."""

    def __init__(self, source: str, timeout: float = 10.0) -> None:
        self.driver, self.data_source = parse_store_dsn(source)
        try:
            self.target = dsnmod.parse(self.driver, self.data_source)
        except dsnmod.DSNError as exc:
            raise StoreError(f"invalid DSN: {exc}") from exc
        self.timeout = self.target.connect_timeout or timeout
        self.last_tls: dict[str, Any] | None = None
        self.logins = 0
        self._run(self._initialize)

    def describe(self) -> str:
        """String(): the store without its password."""
        return self.target.describe()

    def _run(self, fn: Any) -> Any:
        from .database import Connection  # late: database imports runtime, which imports config

        try:
            conn = Connection(self.target, self.timeout)
        except Exception as exc:  # noqa: BLE001 - every driver error means "no store"
            raise StoreError(f"failed to connect to {self.driver} database: {type(exc).__name__}: {exc}".strip()) from exc
        self.logins += 1
        self.last_tls = conn.tls
        try:
            return fn(conn)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as the store's error
            raise StoreError(f"{type(exc).__name__}: {exc}".strip()) from exc
        finally:
            conn.close()

    def _initialize(self, conn: Any) -> None:
        text = "MEDIUMTEXT" if self.driver == "mysql" else "TEXT"
        conn.query(
            "CREATE TABLE IF NOT EXISTS Configurations (Id VARCHAR(26) PRIMARY KEY, "
            f"Value {text} NOT NULL, CreateAt BIGINT NOT NULL, Active BOOLEAN NULL UNIQUE, SHA CHAR(64) NOT NULL DEFAULT '')"
        )

    def load(self) -> bytes | None:
        """The active configuration, or None when there is none (Load then starts from defaults)."""

        def read(conn: Any) -> bytes | None:
            rows = conn.query("SELECT Value FROM Configurations WHERE Active")
            if not rows or not rows[0][0]:
                return None
            value = rows[0][0]
            return value.encode() if isinstance(value, str) else bytes(value)

        return self._run(read)

    def initial(self) -> dict[str, Any]:
        """What Load returns without an active row: the driver name and this data source."""
        return {"SqlSettings": {"DriverName": self.driver, "DataSource": self.data_source}}

    def persist(self, data: dict[str, Any]) -> bool:
        """database.go persist: write `data` as the new active row unless its SHA-256 equals the
        active one's. True when a row was written."""
        value = marshal(data)
        sha = hashlib.sha256(value).hexdigest()

        def write(conn: Any) -> bool:
            rows = conn.query("SELECT SHA FROM Configurations WHERE Active")
            if rows and str(rows[0][0] or "").strip() == sha:
                return False
            conn.query("BEGIN")
            try:
                conn.query("UPDATE Configurations SET Active = NULL WHERE Active")
                conn.query(
                    "INSERT INTO Configurations (Id, Value, CreateAt, Active, SHA) VALUES (%s, %s, %s, TRUE, %s)",
                    (_new_id(), value.decode(), int(time.time() * 1000), sha),
                )
            except Exception:
                conn.query("ROLLBACK")
                raise
            conn.query("COMMIT")
            return True

        return self._run(write)

    def status(self) -> dict[str, Any]:
        return {"target": self.describe(), "tlsMode": self.target.tls, "tls": self.last_tls, "logins": self.logins}

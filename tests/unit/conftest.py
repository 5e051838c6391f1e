"""Fixtures the unit tests share: the private MariaDB and PostgreSQL servers (tests/helpers/
db_servers.py) that the database, rotation, accounts, replica and stand-in tests run against.
Module-scoped: each module that asks gets its own servers."""

from tests.helpers.db_servers import mysql_server, pg_server, tls_on  # noqa: F401 - fixtures, found by name

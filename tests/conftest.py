"""Suite-wide rule: a skipped test fails the run.

Every test in this suite can run on the machines `make test` prepares (it installs MariaDB,
PostgreSQL, sshd, nginx, the lab's tools, and builds the lab's base image), so a skip means a
promise went unchecked, not that it holds. The run therefore fails when anything skipped, with
the list of what and why. `MMTLS_ALLOW_SKIPS=1` lets a developer run a subset on a machine that
cannot run everything (e.g. `pytest -m "not lab"` as a non-root user); CI never sets it.
"""

from __future__ import annotations

import os

import pytest

ALLOW_ENV = "MMTLS_ALLOW_SKIPS"


def _skipped(session: pytest.Session) -> list[pytest.TestReport]:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    return list(reporter.stats.get("skipped", [])) if reporter is not None else []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    skipped = _skipped(session)
    if skipped and os.environ.get(ALLOW_ENV) != "1" and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    skipped = list(terminalreporter.stats.get("skipped", []))
    if not skipped or os.environ.get(ALLOW_ENV) == "1":
        return
    terminalreporter.section("unexpected skips (each fails the run)", red=True)
    for rep in skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        terminalreporter.write_line(f"{rep.nodeid}: {reason}")
    terminalreporter.write_line(f"set {ALLOW_ENV}=1 to allow skips on a machine that cannot run everything")

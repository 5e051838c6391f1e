"""The stand-in applies MM_* variables like Mattermost's applyEnvKey (server/config/environment.go)
for the version it emulates: a setting that version lacks is ignored silently, values that Go's
strconv cannot parse leave the setting alone, lists split on single spaces, and the version is
the binary's own (`mattermost version`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import naming, seeding
from lab.standin import mmstandin
from lab.standin.mmstandin import config as cfgmod
from lab.standin.mmstandin import server


def _load(tmp_path: Path, env: dict[str, str], version: str, data: dict | None = None) -> cfgmod.Config:
    f = tmp_path / "config.json"
    f.write_text(json.dumps(data or {"SqlSettings": {"DataSource": "postgres://u:p@h/db?sslmode=disable"}}))
    return cfgmod.load(str(f), environ=env, version=version)


NEW = "MM_CLUSTERSETTINGS_ENABLEGOSSIPENCRYPTION"
OLD = "MM_CLUSTERSETTINGS_ENABLEEXPERIMENTALGOSSIPENCRYPTION"


@pytest.mark.parametrize(
    ("version", "name", "applied"),
    [
        ("10.11.0", NEW, True),
        ("11.1.0", NEW, True),
        ("10.5.3", NEW, False),  # the setting does not exist yet: ignored, no error
        ("10.5.3", OLD, True),
        ("10.11.0", OLD, False),
    ],
)
def test_a_setting_applies_only_where_the_version_has_it(tmp_path: Path, version: str, name: str, applied: bool) -> None:
    cfg = _load(tmp_path, {name: "true"}, version)
    key = "EnableGossipEncryption" if name == NEW else "EnableExperimentalGossipEncryption"
    assert (f"ClusterSettings.{key}" in cfg.from_env) is applied
    assert cfg.section("ClusterSettings")[key] is applied


def test_unknown_names_are_ignored_silently(tmp_path: Path) -> None:
    env = {
        "MM_NOSUCHSECTION_X": "1",
        "MM_SQLSETTINGS_NOSUCHKEY": "1",
        "MM_SQLSETTINGS": "struct with nothing left",
        "MM_CONFIG": "/elsewhere.json",
        "MMX_SQLSETTINGS_DATASOURCE": "not MM_",
    }
    cfg = _load(tmp_path, env, "11.1.0")
    assert cfg.from_env == {}
    assert cfg.get("SqlSettings", "DataSource") == "postgres://u:p@h/db?sslmode=disable"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("1", True), ("T", True), ("True", True), ("false", False), ("0", False), ("F", False),
     ("yes", None), ("TRUE ", None), ("on", None), ("", None)],
)
def test_booleans_parse_like_strconv_parsebool(tmp_path: Path, raw: str, expected: bool | None) -> None:
    data = {"SqlSettings": {"DataSource": "x"}, "ServiceSettings": {"TLSStrictTransport": True}}
    cfg = _load(tmp_path, {"MM_SERVICESETTINGS_TLSSTRICTTRANSPORT": raw}, "11.1.0", data)
    # an unparsable value leaves the file's value (True) in place
    assert cfg.get("ServiceSettings", "TLSStrictTransport") is (True if expected is None else expected)


@pytest.mark.parametrize(("raw", "expected"), [("1500", 1500), ("+7", 7), ("-1", -1), ("1_000", 5), (" 9", 5), ("9.0", 5)])
def test_integers_parse_like_strconv_parseint(tmp_path: Path, raw: str, expected: int) -> None:
    data = {"SqlSettings": {"DataSource": "x", "MaxIdleConns": 5}}
    cfg = _load(tmp_path, {"MM_SQLSETTINGS_MAXIDLECONNS": raw}, "11.1.0", data)
    assert cfg.get("SqlSettings", "MaxIdleConns") == expected


def test_lists_split_on_single_spaces_and_extra_parts_still_set_the_leaf(tmp_path: Path) -> None:
    env = {"MM_SQLSETTINGS_DATASOURCEREPLICAS": "a  b", "mm_sqlsettings_datasource_whatever": "dsn-from-env"}
    cfg = _load(tmp_path, env, "11.1.0")
    assert cfg.get("SqlSettings", "DataSourceReplicas") == ["a", "", "b"]
    # GetEnvironment upper-cases names; the reflection stops at the first leaf (DataSource)
    assert cfg.get("SqlSettings", "DataSource") == "dsn-from-env"


def test_file_settings_the_version_lacks_are_dropped(tmp_path: Path) -> None:
    data = {"SqlSettings": {"DataSource": "x"}, "ClusterSettings": {"EnableGossipEncryption": True}, "Nope": {"A": 1}}
    cfg = _load(tmp_path, {}, "10.5.0", data)
    assert "EnableGossipEncryption" not in cfg.data.get("ClusterSettings", {}) and "Nope" not in cfg.data


def test_the_version_is_the_binarys_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert server.main(["version"]) == 0
    assert capsys.readouterr().out.startswith(f"Version: {mmstandin.VERSION}\n")
    # the lab writes it per host beside the package, so a lab can mix versions
    upper, base = tmp_path / "upper", tmp_path / "base"
    upper.mkdir()
    base.mkdir()
    host = next(h for h in naming.plan(1, []) if h.role == "node")
    seeding.stage_host(upper, base, host, [host], {"postgres": "pw", "mysql": "pw"}, "ssh-ed25519 AAAA test", version="10.5.3")
    staged = upper / seeding.STAGE / "standin/mmstandin/VERSION"
    assert staged.read_text() == "10.5.3\n"
    assert not (Path(mmstandin.__file__).parent / "VERSION").exists(), "the repository must not pin a version"

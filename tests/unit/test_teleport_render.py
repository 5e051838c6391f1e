"""Teleport plugin renderers: the TOML parses back (tomllib) to exactly the values, hostile ones
included; the unit passes `systemd-analyze verify`; the RBAC files are the documented resources;
the enable/disable scripts run against a stand-in systemctl and put the previous state back;
plus the Teleport config checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from components import teleport_render as tr
from components.config import parse
from tests.helpers.scripts import syntax_ok
from tests.helpers.stack_config import HOSTKEY, good, parse_error

HOSTILE_TOKEN = "tok\"en\\with'quotes#[x]\n\t= ünï\x00"


def _config(**over: object) -> dict:
    base = {
        "addr": "teleport.example.com:443",
        "identity": "/var/lib/teleport/plugins/mattermost/auth_id",
        "url": "https://mattermost.example.com",
        "token": "xq7nd3kgm8r1bz4yyu5cw9ptoa",
        "recipients": ["team-a/access-requests", "alice@example.com"],
        "log_output": "stderr",
        "log_severity": "INFO",
    }
    base.update(over)
    return tr.plugin_config(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "over",
    [{}, {"token": HOSTILE_TOKEN}, {"recipients": ['a/b"]\n[evil]', "x@y.z"]}, {"url": "https://h:8443/sub path"}],
)
def test_toml_parses_back_to_the_same_values(over: dict) -> None:
    cfg = _config(**over)
    text = tr.render_plugin_toml(cfg)
    assert tomllib.loads(text) == cfg
    parsed = tomllib.loads(text)
    assert parsed["teleport"]["refresh_identity"] is True
    assert set(parsed) == {"teleport", "mattermost", "log"}, "a hostile value opened no table"


def test_toml_has_the_documented_shape() -> None:
    parsed = tomllib.loads(tr.render_plugin_toml(_config()))
    assert parsed == {
        "teleport": {
            "addr": "teleport.example.com:443",
            "identity": "/var/lib/teleport/plugins/mattermost/auth_id",
            "refresh_identity": True,
        },
        "mattermost": {
            "url": "https://mattermost.example.com",
            "token": "xq7nd3kgm8r1bz4yyu5cw9ptoa",
            "recipients": ["team-a/access-requests", "alice@example.com"],
        },
        "log": {"output": "stderr", "severity": "INFO"},
    }


def _unit_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_unit_is_the_documented_one_plus_the_ca_dir() -> None:
    text = tr.render_unit(
        binary="/usr/local/bin/teleport-mattermost",
        config_file="/etc/teleport-mattermost.toml",
        ca_dir="/etc/teleport-mattermost/ca",
    )
    assert _unit_lines(text) == [
        "[Unit]",
        "Description=Teleport Mattermost Plugin",
        "After=network.target",
        "[Service]",
        "Type=simple",
        "Restart=on-failure",
        "Environment=SSL_CERT_DIR=/etc/teleport-mattermost/ca:/etc/ssl/certs",
        "ExecStart=/usr/local/bin/teleport-mattermost start --config=/etc/teleport-mattermost.toml --pid-file=/var/run/teleport-mattermost.pid",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "PIDFile=/run/teleport-mattermost.pid",
        "[Install]",
        "WantedBy=multi-user.target",
    ]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    binary = tmp_path / "teleport-mattermost"
    shutil.copy("/bin/true", binary)
    unit = tmp_path / "teleport-mattermost.service"
    unit.write_text(
        tr.render_unit(
            binary=str(binary), config_file="/etc/teleport-mattermost.toml", ca_dir="/etc/teleport-mattermost/ca"
        )
    )
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "teleport-mattermost.service" not in r.stderr, r.stderr
    # the check can fail: a missing binary is reported
    binary.unlink()
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode != 0 and "not executable" in r.stderr


@pytest.mark.parametrize("bad", ["relative/bin", "/a b", "/x$y", "/x%i", "/x\nExecStartPre=/bin/evil"])
def test_unit_refuses_paths_systemd_would_expand_or_split(bad: str) -> None:
    with pytest.raises(ValueError):
        tr.render_unit(binary=bad, config_file="/etc/x.toml", ca_dir="/etc/ca")


def test_rbac_files_are_the_documented_resources() -> None:
    docs = {name: list(yaml.safe_load_all(text)) for name, text in tr.rbac_files().items()}
    kinds = {name: [(d["kind"], d["metadata"]["name"]) for d in ds] for name, ds in docs.items()}
    assert kinds == {
        "access-plugin.yaml": [("role", "access-plugin"), ("user", "access-plugin")],
        "access-plugin-impersonator.yaml": [("role", "access-plugin-impersonator")],
        "editor-request-rbac.yaml": [("role", "editor-reviewer"), ("role", "editor-requester")],
    }
    plugin_role = docs["access-plugin.yaml"][0]["spec"]["allow"]["rules"]
    assert {"resources": ["access_request"], "verbs": ["list", "read"]} in plugin_role
    assert {"resources": ["access_plugin_data"], "verbs": ["update"]} in plugin_role
    imp = docs["access-plugin-impersonator.yaml"][0]["spec"]["allow"]["impersonate"]
    assert imp == {"roles": ["access-plugin"], "users": ["access-plugin"]}
    req = docs["editor-request-rbac.yaml"][1]["spec"]["allow"]["request"]
    assert req == {"roles": ["editor"], "thresholds": [{"approve": 1, "deny": 1}]}


# ------------------------------------------------------------------ enable / disable

STANDIN_SYSTEMCTL = r"""#!/bin/sh
# STAND-IN for systemctl (test only): unit state in files under $SYSTEMCTL_STATE
s="$SYSTEMCTL_STATE"
echo "$*" >> "$s/calls"
case "$1" in
  daemon-reload) ;;
  is-enabled) u="$2"; [ -e "$s/$u.enabled" ] && { echo enabled; exit 0; }; echo disabled; exit 1 ;;
  is-active) [ "$2" = --quiet ] && u="$3" || u="$2"; [ -e "$s/$u.active" ] && { [ "$2" = --quiet ] || echo active; exit 0; }; [ "$2" = --quiet ] || echo inactive; exit 3 ;;
  enable) : > "$s/$2.enabled" ;;
  disable) rm -f "$s/$2.enabled" ;;
  start) : > "$s/$2.active" ;;
  stop) rm -f "$s/$2.active" ;;
  *) echo "unexpected: $*" >&2; exit 9 ;;
esac
"""


@pytest.fixture
def sysd(tmp_path: Path) -> dict[str, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(STANDIN_SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    st = tmp_path / "systemd"
    st.mkdir()
    return {"bin": bin_dir, "sd": st, "state": tmp_path / "mtm-state", "root": tmp_path}


def run(script: str, env: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-euc", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{env['bin']}:{os.environ['PATH']}", "SYSTEMCTL_STATE": str(env["sd"])},
    )


U = "teleport-mattermost"


def calls(env: dict[str, Path]) -> list[str]:
    p = env["sd"] / "calls"
    return p.read_text().splitlines() if p.exists() else []


def test_enable_without_binary_says_so_and_disable_restores(sysd: dict[str, Path]) -> None:
    st = str(sysd["state"])
    r = run(tr.render_enable(U, "/nonexistent/teleport-mattermost", st), sysd)
    assert r.returncode == 0, r.stderr
    assert "binary /nonexistent/teleport-mattermost is absent" in r.stdout
    assert "systemctl start teleport-mattermost.service" in r.stdout
    assert (sysd["sd"] / f"{U}.service.enabled").exists()
    assert not (sysd["sd"] / f"{U}.service.active").exists(), "enable only, never start"
    n = len(calls(sysd))
    r = run(tr.render_enable(U, "/nonexistent/teleport-mattermost", st), sysd)
    assert r.returncode == 0
    assert f"enable {U}.service" not in calls(sysd)[n:], "second run enables nothing again"
    # the admin starts it later; destroy disables and stops what was not there before
    (sysd["sd"] / f"{U}.service.active").touch()
    r = run(tr.render_disable(U, st), sysd)
    assert r.returncode == 0, r.stderr
    assert not (sysd["sd"] / f"{U}.service.enabled").exists()
    assert not (sysd["sd"] / f"{U}.service.active").exists()
    assert not sysd["state"].exists(), "marker and empty state dir gone"


def test_enable_with_binary_and_previously_enabled_unit_is_left_enabled(sysd: dict[str, Path]) -> None:
    st = str(sysd["state"])
    binary = sysd["root"] / "teleport-mattermost"
    shutil.copy("/bin/true", binary)
    (sysd["sd"] / f"{U}.service.enabled").touch()
    (sysd["sd"] / f"{U}.service.active").touch()
    r = run(tr.render_enable(U, str(binary), st), sysd)
    assert r.returncode == 0, r.stderr
    assert f"plugin binary {binary} present" in r.stdout
    assert f"enable {U}.service" not in calls(sysd)
    r = run(tr.render_disable(U, st), sysd)
    assert r.returncode == 0, r.stderr
    assert (sysd["sd"] / f"{U}.service.enabled").exists(), "enabled before us: stays enabled"
    assert (sysd["sd"] / f"{U}.service.active").exists(), "running before us: keeps running"
    assert not any(c.startswith(("disable", "stop")) for c in calls(sysd))


def test_disable_keeps_a_state_dir_others_still_use(sysd: dict[str, Path]) -> None:
    st = sysd["state"]
    assert run(tr.render_enable(U, "/x", str(st)), sysd).returncode == 0
    (st / "owners").mkdir()
    assert run(tr.render_disable(U, str(st)), sysd).returncode == 0
    assert (st / "owners").is_dir() and not (st / f"{U}.before").exists()


def test_reload_restarts_only_a_running_plugin_with_a_unit_file(sysd: dict[str, Path]) -> None:
    unit_file = sysd["root"] / "u.service"
    stub = sysd["bin"] / "systemctl"
    stub.write_text(STANDIN_SYSTEMCTL.replace('  *) echo "unexpected', '  try-restart) ;;\n  *) echo "unexpected'))
    assert run(tr.render_reload(U, str(unit_file)), sysd).returncode == 0
    assert calls(sysd) == ["daemon-reload"]
    unit_file.touch()
    assert run(tr.render_reload(U, str(unit_file)), sysd).returncode == 0
    assert calls(sysd)[1:] == ["daemon-reload", f"try-restart {U}.service"]


def test_scripts_parse_and_quote(tmp_path: Path) -> None:
    weird = str(tmp_path / "st'ate $(touch pwned)")
    for script in (
        tr.render_enable(U, "/usr/local/bin/x", weird),
        tr.render_disable(U, weird),
        tr.render_reload(U, "/etc/x y"),
    ):
        assert syntax_ok(script)
    assert "$(touch pwned)'" in tr.render_enable(U, "/x", weird), "quoted, not expanded"


# ------------------------------------------------------------------ config validation
# (the values the config refuses for Teleport are rows of tests/helpers/stack_config.BAD, which the
# parser's and the whole program's tests both run)


def _cfg(**teleport: object) -> dict:
    d = good()
    d["teleport"] = {"enabled": True, "address": "10.0.0.30", "ssh": {"hostKey": HOSTKEY}, **teleport}
    d["teleportToken"] = "xq7nd3kgm8r1bz4yyu5cw9ptoa"
    return d


def test_defaults() -> None:
    cfg = parse(_cfg())
    t = cfg.teleport
    assert t.effective_mattermost_url(cfg.proxy.server_name) == "https://chat.example.com"
    assert t.identity_file.startswith("/") and t.log_severity == "INFO" and t.log_output == "stderr"
    assert (
        parse(_cfg(mattermostUrl="https://mm.example.com:8443/")).teleport.mattermost_url
        == "https://mm.example.com:8443"
    )
    assert (
        parse(_cfg(recipients=["devops/requests", "bob.smith+tp@example.co.uk"])).teleport.recipients[1]
        == "bob.smith+tp@example.co.uk"
    )


@pytest.mark.parametrize("token", ["/etc/mattermost-token", "two words", "tab\tin", ""])
def test_token_that_the_plugin_would_misread_is_refused_without_echo(token: str) -> None:
    d = _cfg()
    d["teleportToken"] = token
    msg = parse_error(d)
    assert "teleportToken:" in msg
    assert not token or token not in msg


def test_token_is_required() -> None:
    d = _cfg()
    del d["teleportToken"]
    assert "teleportToken:" in parse_error(d)

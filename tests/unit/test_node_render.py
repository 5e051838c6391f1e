"""The node renderers, tested by parsing what they write the way systemd does and by running the
scripts: against stub systemctl/curl/journalctl in a temporary PATH (with a fake clock, so the
timeout path takes no real time), against a real TLS listener with real curl, and inside the
real remote_files apply script to show the rollback."""

from __future__ import annotations

import ctypes
import dataclasses
import http.server
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from components import node_render
from components.node_render import (
    NodePaths,
    cert_fingerprint_sha256,
    node_paths,
    render_activate_script,
    render_dropin,
    render_env_file,
    render_restore_activate_script,
    render_trust_activate_script,
    render_trust_restore_script,
    render_wait_script,
    tls_env,
)
from components.platform import DEBIAN
from components.remote_files_render import FileSpec, encode_bundle, render_files_apply, render_files_restore
from tests.helpers.certs import make_ca, make_leaf, pem
from tests.helpers.scripts import SHELLS, syntax_ok
from tests.helpers.stubs import JOURNAL, UPSTREAM, Stubs, run

LIBSYSTEMD_SHARED = next(
    (p for p in Path("/usr/lib").glob("*/systemd/libsystemd-shared-*.so")), None
)

# ---------------------------------------------------------------- EnvironmentFile


def parse_env_reference(text: str) -> dict[str, str]:
    """systemd.exec(5) EnvironmentFile= rules, for the subset we must get right: comments and
    blank lines, unquoted values (backslash keeps the next char, outer whitespace trimmed),
    single quotes (verbatim) and double quotes (only \\" \\\\ \\` \\$ are escapes)."""
    out: dict[str, str] = {}
    for raw in text.split("\n"):
        line = raw.strip(" \t\r")
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _, rest = line.partition("=")
        key, rest = key.strip(), rest.lstrip(" \t")
        value, i = "", 0
        if rest.startswith("'"):
            end = rest.index("'", 1)
            value = rest[1:end]
        elif rest.startswith('"'):
            i = 1
            while rest[i] != '"':
                if rest[i] == "\\" and rest[i + 1] in '"\\`$':
                    value += rest[i + 1]
                    i += 2
                else:
                    value += rest[i]
                    i += 1
        else:
            while i < len(rest):
                if rest[i] == "\\" and i + 1 < len(rest):
                    value += rest[i + 1]
                    i += 2
                else:
                    value += rest[i]
                    i += 1
            value = value.rstrip(" \t")
        out[key] = value
    return out


def parse_env_systemd(path: Path) -> dict[str, str]:
    """systemd's own parser (load_env_file from libsystemd-shared, what PID 1 uses for
    EnvironmentFile=)."""
    assert LIBSYSTEMD_SHARED is not None
    lib = ctypes.CDLL(str(LIBSYSTEMD_SHARED))
    lib.load_env_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_char_p))]
    lib.load_env_file.restype = ctypes.c_int
    out = ctypes.POINTER(ctypes.c_char_p)()
    r = lib.load_env_file(None, str(path).encode(), ctypes.byref(out))
    assert r == 0, f"load_env_file failed: {r}"
    env: dict[str, str] = {}
    i = 0
    while out[i]:
        k, _, v = out[i].decode().partition("=")
        env[k] = v
        i += 1
    return env


TRICKY = {
    "MM_SQLSETTINGS_DATASOURCE": (
        "postgres://mmuser:p%40ss%26w%3Frd%25@10.251.0.21:5432/mattermost"
        "?sslmode=verify-full&sslrootcert=/etc/mattermost-tls/ca.crt&connect_timeout=10"
    ),
    "MYSQL": "mmuser:pa$$w0rd@tcp(10.251.0.20:3306)/mattermost?charset=utf8mb4,utf8&writeTimeout=30s&tls=true",
    "SHELLISH": "$HOME ${PATH} `id` $(id) \\n \\\\ \"dq\" 'sq' # not a comment ; nor this %i %%",
    "SPACES": "  leading and trailing  ",
    "EMPTY": "",
    "UNICODE": "Grüße ✓",
    "TRAILING_BACKSLASH": "ends with \\",
}


@pytest.mark.parametrize("parser", ["reference", "systemd"])
def test_env_file_values_survive_systemd_parsing_exactly(tmp_path: Path, parser: str) -> None:
    text = render_env_file(TRICKY)
    if parser == "reference":
        parsed = parse_env_reference(text)
    else:
        if LIBSYSTEMD_SHARED is None:
            pytest.skip("libsystemd-shared not installed")
        f = tmp_path / "env"
        f.write_text(text)
        parsed = parse_env_systemd(f)
    assert parsed == TRICKY


def test_env_file_is_sorted_and_stable() -> None:
    a = render_env_file({"B": "2", "A": "1"})
    assert a == render_env_file({"A": "1", "B": "2"})
    assert a.splitlines()[1:] == ['A="1"', 'B="2"']


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "nul\x00", "bom\ufeff", "nonchar\ufdd0", "x\uffff"])
def test_env_file_refuses_unsafe_values_without_echoing_them(bad: str) -> None:
    with pytest.raises(ValueError) as e:
        render_env_file({"MM_SQLSETTINGS_DATASOURCE": "secretpw" + bad})
    assert "secretpw" not in str(e.value)
    assert "MM_SQLSETTINGS_DATASOURCE" in str(e.value)


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A B", "", "A=B"])
def test_env_file_refuses_bad_names(name: str) -> None:
    with pytest.raises(ValueError):
        render_env_file({name: "x"})


def test_tls_env_sets_the_contract_and_refuses_overrides() -> None:
    env = tls_env(
        cert_file="/etc/mattermost-tls/node.crt",
        key_file="/etc/mattermost-tls/node.key",
        driver_name="postgres",
        data_source="postgres://x",
        extra={"MM_CLUSTERSETTINGS_ENABLE": "true"},
    )
    assert env == {
        "MM_SERVICESETTINGS_CONNECTIONSECURITY": "TLS",
        "MM_SERVICESETTINGS_TLSCERTFILE": "/etc/mattermost-tls/node.crt",
        "MM_SERVICESETTINGS_TLSKEYFILE": "/etc/mattermost-tls/node.key",
        "MM_SERVICESETTINGS_TLSMINVER": "1.2",
        "MM_SQLSETTINGS_DRIVERNAME": "postgres",
        "MM_SQLSETTINGS_DATASOURCE": "postgres://x",
        "MM_CLUSTERSETTINGS_ENABLE": "true",
    }
    with pytest.raises(ValueError, match="must not override"):
        tls_env(
            cert_file="/a", key_file="/b", driver_name="postgres", data_source="x",
            extra={"MM_SERVICESETTINGS_CONNECTIONSECURITY": ""},
        )
    with pytest.raises(ValueError, match="absolute"):
        tls_env(cert_file="node.crt", key_file="/b", driver_name="postgres", data_source="x")


# ---------------------------------------------------------------- drop-in and paths


def test_paths_follow_tls_dir_and_unit() -> None:
    p = node_paths("/etc/mattermost-tls/", "mattermost")
    assert p == NodePaths(
        cert="/etc/mattermost-tls/node.crt",
        key="/etc/mattermost-tls/node.key",
        ca="/etc/mattermost-tls/ca.crt",
        system_ca="/usr/local/share/ca-certificates/mattermost-transport-ca.crt",
        env="/etc/mattermost-tls/mattermost.env",
        dropin="/etc/systemd/system/mattermost.service.d/50-transport-encryption.conf",
    )
    assert set(p.as_dict()) == {"cert", "key", "ca", "systemCa", "env", "dropin"}


def test_dropin_loads_the_env_file_and_systemd_accepts_it(tmp_path: Path) -> None:
    env = tmp_path / "mattermost.env"
    env.write_text(render_env_file(TRICKY))
    text = render_dropin(str(env))
    assert "[Service]" in text and f"EnvironmentFile={env}\n" in text
    assert "Environment=" not in text.replace("EnvironmentFile=", ""), "values never go into the unit"
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    unit_dir = tmp_path / "units"
    (unit_dir / "mattermost.service.d").mkdir(parents=True)
    (unit_dir / "mattermost.service").write_text("[Unit]\nDescription=t\n[Service]\nExecStart=/bin/true\n")
    (unit_dir / "mattermost.service.d" / node_render.DROPIN_NAME).write_text(text)
    r = subprocess.run(
        ["systemd-analyze", "verify", str(unit_dir / "mattermost.service")],
        capture_output=True, text=True, env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"},
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    # the check can fail: a relative path is reported
    (unit_dir / "mattermost.service.d" / node_render.DROPIN_NAME).write_text("[Service]\nEnvironmentFile=rel/x\n")
    r = subprocess.run(
        ["systemd-analyze", "verify", str(unit_dir / "mattermost.service")],
        capture_output=True, text=True, env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"},
    )
    assert "not absolute" in r.stderr


@pytest.mark.parametrize("bad", ["relative.env", "/etc/a b.env", "/etc/%i.env", "/etc/x\n[Service]"])
def test_dropin_refuses_paths_systemd_would_reinterpret(bad: str) -> None:
    with pytest.raises(ValueError):
        render_dropin(bad)


# ---------------------------------------------------------------- scripts: syntax


def all_scripts(paths: NodePaths) -> list[str]:
    return [
        render_wait_script(unit="mattermost", port=8065, upstream_name=UPSTREAM, ca_file=paths.ca, timeout_seconds=120),
        render_activate_script(
            unit="mattermost", port=8065, upstream_name=UPSTREAM, paths=paths, timeout_seconds=120,
            require_system_trust=True,
        ),
        render_restore_activate_script(unit="mattermost"),
    ]


@pytest.mark.parametrize("shell", SHELLS)
def test_scripts_parse(shell: str) -> None:
    for script in all_scripts(node_paths("/etc/mattermost-tls", "mattermost")):
        r = subprocess.run([shell, "-n", "-c", script], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_hostile_values_are_quoted(tmp_path: Path) -> None:
    paths = node_paths(str(tmp_path / "d'x $(touch pwned)"), "mm; touch owned")
    script = render_wait_script(
        unit="mm; touch owned", port=8065, upstream_name="a$(touch pwned)", ca_file=paths.ca, timeout_seconds=1
    )
    for s in (script, *all_scripts(paths)):
        assert syntax_ok(s)
    assert "'mm; touch owned.service'" in script


@pytest.mark.parametrize("kw", [{"port": 0}, {"timeout_seconds": 0}, {"journal_lines": -1}, {"port": True}])
def test_wait_script_refuses_nonsense_numbers(kw: dict[str, int]) -> None:
    args = {"unit": "m", "port": 8065, "upstream_name": UPSTREAM, "ca_file": "/ca", "timeout_seconds": 5, **kw}
    with pytest.raises(ValueError):
        render_wait_script(**args)  # type: ignore[arg-type]


# ---------------------------------------------------------------- scripts: run against stubs

@pytest.fixture
def stubs(tmp_path: Path) -> Stubs:
    return Stubs(tmp_path)


def wait(timeout: int = 10, port: int = 8065, ca: str = "/etc/mattermost-tls/ca.crt") -> str:
    return render_wait_script(unit="mattermost", port=port, upstream_name=UPSTREAM, ca_file=ca, timeout_seconds=timeout)


def test_wait_succeeds_once_the_node_answers(stubs: Stubs) -> None:
    stubs.flag("curl_ok_after", "2")
    r = run(wait(), stubs.env())
    assert r.returncode == 0, r.stderr
    assert "mattermost.service answers over TLS" in r.stdout
    calls = stubs.calls()
    assert calls[0] == "systemctl restart mattermost.service"
    curls = [c for c in calls if c.startswith("curl ")]
    assert len(curls) == 3
    assert all(
        "--cacert /etc/mattermost-tls/ca.crt" in c
        and f"--resolve {UPSTREAM}:8065:127.0.0.1" in c
        and c.endswith(f"https://{UPSTREAM}:8065/api/v4/system/ping")
        and "--insecure" not in c and " -k " not in c
        for c in curls
    )
    assert not any(c.startswith("journalctl") for c in calls)


def test_wait_fails_after_the_timeout_with_the_nodes_journal(stubs: Stubs) -> None:
    r = run(wait(timeout=10), stubs.env())
    assert r.returncode == 1
    assert "did not answer over TLS on https://mattermost-app.internal:8065/api/v4/system/ping within 10 s" in r.stderr
    assert "Couldn't connect to server" in r.stderr, "the last TLS error is reported"
    assert JOURNAL in r.stderr and "Active: activating (auto-restart)" in r.stderr
    assert "journalctl -u mattermost.service -n 30 --no-pager" in stubs.calls()
    assert stubs.clock() >= 1010, "it waited out the whole deadline"
    assert stubs.clock() <= 1012, "and not longer"


def test_wait_stops_early_when_the_unit_failed(stubs: Stubs) -> None:
    stubs.flag("unit_failed")
    r = run(wait(timeout=100), stubs.env())
    assert r.returncode == 1 and "failed after the restart" in r.stderr and JOURNAL in r.stderr
    assert stubs.clock() == 1000


def test_failed_restart_reports_systemd_and_journal(stubs: Stubs) -> None:
    stubs.flag("restart_fails")
    r = run(wait(), stubs.env())
    assert r.returncode == 1
    assert "did not restart: Job for mattermost.service failed" in r.stderr and JOURNAL in r.stderr
    assert not any(c.startswith("curl") for c in stubs.calls())


def test_wait_without_curl_fails_clearly(tmp_path: Path) -> None:
    stubs = Stubs(tmp_path, ["systemctl", "journalctl", "date", "sleep"])
    env = stubs.env() | {"PATH": str(stubs.dir)}
    for tool in ("cat", "timeout"):
        (stubs.dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    r = run(wait(), env)
    assert r.returncode == 1 and "curl is not installed" in r.stderr


def test_restore_activate_queues_a_restart_and_never_fails(stubs: Stubs) -> None:
    r = run(render_restore_activate_script(unit="mattermost"), stubs.env())
    assert r.returncode == 0, r.stderr
    calls = stubs.calls()
    assert "systemctl restart --no-block mattermost.service" in calls
    assert "update-ca-certificates " in calls and "systemctl daemon-reload" in calls
    assert not any(c.startswith("curl") for c in calls), "no waiting on delete"
    # the database may still refuse the node during a destroy: nothing here may fail it
    stubs.flag("restart_fails")
    stubs.flag("reload_fails")
    r = subprocess.run(
        ["/bin/sh", "-euc", render_restore_activate_script(unit="mattermost")],
        capture_output=True, text=True, env=stubs.env(),
    )
    assert r.returncode == 0 and "warning: could not queue a restart" in r.stderr


def restore_waiting(wait_seconds: int = 20) -> str:
    return render_restore_activate_script(unit="mattermost", port=8065, wait_seconds=wait_seconds)


def test_restore_waits_for_a_new_process_to_answer_then_returns(stubs: Stubs) -> None:
    """A destroy restarts the nodes one after another: each delete returns once its node answers
    again (plain HTTP or HTTPS, whatever the original setup was)."""
    stubs.flag("mainpid", "100\n")
    stubs.flag("pid_after_restart", "200\n")
    stubs.flag("curl_ok_after", "1")  # the first check fails (still starting), the next answers
    r = run(restore_waiting(), stubs.env())
    assert r.returncode == 0, r.stderr
    assert "mattermost.service answers again on port 8065" in r.stdout
    assert any("http://127.0.0.1:8065/api/v4/system/ping" in c for c in stubs.calls())


def test_restore_does_not_take_the_old_process_for_the_new_one(stubs: Stubs) -> None:
    """The restart is queued (--no-block): until systemd runs another process, the old one may
    still answer; that is not the node being back."""
    stubs.flag("mainpid", "100\n")
    stubs.flag("curl_ok_after", "0")
    r = run(restore_waiting(), stubs.env())
    assert r.returncode == 0, r.stderr
    assert "answers again" not in r.stdout
    assert "does not answer on port 8065 20 s after its restart; not waiting longer" in r.stderr
    assert not any(c.startswith("curl") for c in stubs.calls()), "no check while the old process runs"


def test_restore_gives_up_waiting_without_failing_the_delete(stubs: Stubs) -> None:
    """A node whose original login the database still refuses (a removed node) never answers:
    the delete warns after the bounded wait and succeeds."""
    stubs.flag("mainpid", "100\n")
    stubs.flag("pid_after_restart", "200\n")
    r = run(restore_waiting(5), stubs.env())
    assert r.returncode == 0 and "not waiting longer" in r.stderr
    assert stubs.clock() >= 1005


def test_restore_stops_waiting_once_systemd_gave_up_on_the_start(stubs: Stubs) -> None:
    """Real Mattermost (and the stand-in) exits when its database login keeps failing; with
    Restart=always systemd then waits to try again (auto-restart): nothing to wait for."""
    stubs.flag("mainpid", "100\n")
    stubs.flag("pid_after_restart", "200\n")
    stubs.flag("activestate", "activating\n")
    stubs.flag("substate", "auto-restart\n")
    r = run(restore_waiting(120), stubs.env())
    assert r.returncode == 0, r.stderr
    assert "did not start (activating auto-restart); not waiting for it" in r.stderr
    assert stubs.clock() < 1010, "no waiting out the whole bound"


def test_the_db_ca_command_refreshes_trust_and_requires_it_for_mysql(stubs: Stubs) -> None:
    """`<node>-db-ca` (components/node.py): its activate refreshes the system trust store, which
    MySQL's tls=true needs; its delete refreshes it again and never fails."""
    r = run(render_trust_activate_script(require_system_trust=True), stubs.env())
    assert r.returncode == 0 and "update-ca-certificates " in stubs.calls(), r.stderr
    (stubs.dir / "update-ca-certificates").unlink()
    env = {**stubs.env(), "PATH": str(stubs.dir)}
    for tool in ("cat", "printf"):
        if shutil.which(tool):
            (stubs.dir / tool).symlink_to(shutil.which(tool) or "")
    r = run(render_trust_activate_script(require_system_trust=True), env)
    assert r.returncode == 1 and "update-ca-certificates is not installed" in r.stderr
    r = run(render_trust_activate_script(require_system_trust=False), env)
    assert r.returncode == 0 and "system trust left as it is" in r.stdout
    r = run(render_trust_restore_script("/usr/local/share/ca-certificates/mattermost-transport-ca.crt"), env)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- real TLS, real curl


class _Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        ok = self.path == "/api/v4/system/ping"
        body = b'{"status":"OK"}' if ok else b"{}"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_node(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS listener on 127.0.0.1 (random port) serving the ping route; yields (port, dir) and
    serves whatever cert.pem/key.pem the test writes into dir before connecting."""
    d = tmp_path / "node"
    d.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ping)

    def wrap(sock, addr):  # type: ignore[no-untyped-def]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
        return ctx.wrap_socket(sock, server_side=True), addr

    plain_accept = server.socket.accept
    server.get_request = lambda: wrap(*plain_accept())  # type: ignore[method-assign]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server.server_address[1], d
    finally:
        server.shutdown()
        server.server_close()


needs_curl = pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")


@needs_curl
@pytest.mark.parametrize(
    ("case", "ok", "error"),
    [
        ("good", True, ""),
        ("other-ca", False, "SSL certificate problem"),
        ("wrong-name", False, "mattermost-app.internal"),
    ],
)
def test_real_curl_verifies_ca_and_upstream_name(
    tls_node: tuple[int, Path], tmp_path: Path, case: str, ok: bool, error: str
) -> None:
    port, d = tls_node
    ca = make_ca()
    signer = make_ca("another CA") if case == "other-ca" else ca
    names = ["mm1", "10.251.0.101"] + ([] if case == "wrong-name" else [UPSTREAM])
    cert, key = make_leaf(signer, names)
    (d / "cert.pem").write_text(cert)
    (d / "key.pem").write_text(key)
    (tmp_path / "ca.crt").write_text(pem(ca[1]))
    stubs = Stubs(tmp_path, ["systemctl", "journalctl", "date", "sleep"])
    r = run(wait(timeout=4, port=port, ca=str(tmp_path / "ca.crt")), stubs.env())
    assert (r.returncode == 0) is ok, r.stdout + r.stderr
    if not ok:
        assert error in r.stderr and JOURNAL in r.stderr


# ---------------------------------------------------------------- inside remote_files: rollback

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("install"), reason="needs root")


def node_files(root: Path) -> tuple[NodePaths, list[FileSpec]]:
    paths = node_paths(
        str(root / "etc/mattermost-tls"), "mattermost",
        systemd_dir=str(root / "etc/systemd/system"),
        platform=dataclasses.replace(DEBIAN, system_ca_dir=str(root / "usr/local/share/ca-certificates")),
    )
    specs = [
        FileSpec(paths.cert), FileSpec(paths.key, "0640"), FileSpec(paths.ca), FileSpec(paths.system_ca),
        FileSpec(paths.env, "0600"), FileSpec(paths.dropin),
    ]
    return paths, specs


def bundle(env_marker: str) -> str:
    return encode_bundle(["cert\n", "key\n", "ca\n", "ca\n", f'X="{env_marker}"\n', "[Service]\n"])


@needs_root
def test_a_node_that_does_not_come_back_gets_its_previous_files(tmp_path: Path) -> None:
    stubs = Stubs(tmp_path)
    paths, specs = node_files(tmp_path)
    # the stub node only answers when its env file is the good one
    stubs.flag("curl_ok_if_good", paths.env)
    activate = stubs.path_prefix() + render_activate_script(
        unit="mattermost", port=8065, upstream_name=UPSTREAM, paths=paths, timeout_seconds=6,
        require_system_trust=True,
    )
    apply = render_files_apply("mm1-tls-files", specs, activate=activate, state_dir=str(tmp_path / "state"))
    r = run(apply, stubs.env(), bundle("GOOD"))
    assert r.returncode == 0, r.stderr
    assert "answers over TLS" in r.stdout
    assert "update-ca-certificates " in stubs.calls() and "systemctl daemon-reload" in stubs.calls()

    r = run(apply, stubs.env(), bundle("BAD"))
    assert r.returncode != 0
    assert "did not answer over TLS" in r.stderr and JOURNAL in r.stderr
    assert "activation failed; the previous configuration is back in place" in r.stderr
    assert "re-activating the previous configuration failed too" not in r.stderr
    assert 'X="GOOD"' in Path(paths.env).read_text()
    restarts = [c for c in stubs.calls() if c == "systemctl restart mattermost.service"]
    assert len(restarts) == 3, "first apply, the failed change, and the restart on the rolled-back files"

    # delete: originals (none) back, restart queued, no wait
    before = len(stubs.calls())
    restore = render_files_restore(
        "mm1-tls-files", specs, restore_activate=stubs.path_prefix() + render_restore_activate_script(unit="mattermost"),
        state_dir=str(tmp_path / "state"),
    )
    r = run(restore, stubs.env())
    assert r.returncode == 0, r.stderr
    assert not Path(paths.dropin).exists() and not Path(paths.env).exists()
    assert not any(c.startswith("curl") for c in stubs.calls()[before:])
    assert "systemctl restart --no-block mattermost.service" in stubs.calls()[before:]


@needs_root
def test_a_failed_first_install_restarts_the_original_without_waiting_again(tmp_path: Path) -> None:
    stubs = Stubs(tmp_path)
    paths, specs = node_files(tmp_path)
    activate = stubs.path_prefix() + render_activate_script(
        unit="mattermost", port=8065, upstream_name=UPSTREAM, paths=paths, timeout_seconds=6,
        require_system_trust=False,
    )
    apply = render_files_apply("mm1-tls-files", specs, activate=activate, state_dir=str(tmp_path / "state"))
    r = run(apply, stubs.env(), bundle("BAD"))
    assert r.returncode != 0 and JOURNAL in r.stderr
    assert "re-activating the previous configuration failed too" not in r.stderr
    assert not Path(paths.dropin).exists() and not Path(paths.key).exists()
    calls = stubs.calls()
    assert calls[-1] == "systemctl restart --no-block mattermost.service"
    assert stubs.clock() <= 1008, "only the failed change waited out its deadline"


def test_activate_requires_system_trust_for_mysql(tmp_path: Path) -> None:
    stubs = Stubs(tmp_path, ["systemctl", "journalctl", "curl", "date", "sleep"])
    paths = node_paths(str(tmp_path), "mattermost", systemd_dir=str(tmp_path))
    env = stubs.env() | {"PATH": str(stubs.dir)}
    for tool in ("cat", "timeout"):
        (stubs.dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    script = render_activate_script(
        unit="mattermost", port=8065, upstream_name=UPSTREAM, paths=paths, timeout_seconds=6, require_system_trust=True
    )
    r = run(script, env)
    assert r.returncode == 1 and "update-ca-certificates is not installed" in r.stderr
    relaxed = render_activate_script(
        unit="mattermost", port=8065, upstream_name=UPSTREAM, paths=paths, timeout_seconds=6, require_system_trust=False
    )
    r = run(relaxed, env)
    assert "system trust left as it is" in r.stdout


# ---------------------------------------------------------------- fingerprint


def test_fingerprint_matches_openssl(tmp_path: Path) -> None:
    cert, _ = make_leaf(make_ca(), ["mm1", "10.251.0.101", UPSTREAM])
    fp = cert_fingerprint_sha256(cert)
    assert len(fp.split(":")) == 32
    if shutil.which("openssl"):
        f = tmp_path / "c.pem"
        f.write_text(cert)
        out = subprocess.run(
            ["openssl", "x509", "-in", str(f), "-noout", "-fingerprint", "-sha256"], capture_output=True, text=True
        ).stdout
        assert out.strip().split("=", 1)[1] == fp

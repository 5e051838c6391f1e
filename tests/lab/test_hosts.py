"""The lab's real hosts: boot, pinned SSH, seeded "before" state, stand-in refusals, teardown.

Owns: evidence that ``lab.hosts`` gives the program real hosts to work on, and
that the stand-in refuses to start where Mattermost would. The last tests take
the lab down and bring it back, so they run last in this module and leave the
lab up for later modules.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lab import naming
from lab.hosts import (
    BRIDGE,
    NETNS_DIR,
    PROPAGATE_DIR,
    REPO,
    Lab,
    cgroup_roots,
    lab_nspawn_pids,
    link_names,
    netns_names,
    pid_alive,
)

pytestmark = pytest.mark.lab

DEFAULT_HOSTS = ["mm1", "mm2", "mm3", "proxy", "mariadb", "postgres"]
NODES = ["mm1", "mm2", "mm3"]
PROXY = naming.address_of("proxy")


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True)


def _traces(lab: Lab) -> dict[str, list[str]]:
    """Everything on the VM that belongs to a lab host."""
    return {
        "netns": sorted(n for n in netns_names() if n.startswith(naming.NETNS_PREFIX)),
        "links": sorted(n for n in link_names() if n.startswith(naming.VETH_PREFIX) or n == BRIDGE),
        "cgroups": sorted(str(r) for r in cgroup_roots() if r.exists()),
        "propagate": sorted(
            p.name for p in (PROPAGATE_DIR.iterdir() if PROPAGATE_DIR.is_dir() else []) if p.name.startswith("mmtls-")
        ),
        "nspawn": sorted(lab_nspawn_pids()),
        "overlays": sorted(p.name for p in (lab.state_dir / "hosts").glob("*")),
    }


def _wait_active(lab: Lab, host: str, unit: str) -> None:
    """Bring ``unit`` back after a test broke it (no timing asserted; a hang fails the ssh timeout)."""
    lab.ssh(host, f"systemctl reset-failed {unit}; systemctl restart {unit}", timeout=120)


# --------------------------------------------------------------------------- boot and identity


def test_inventory_matches_the_design_schema(lab: Lab) -> None:
    inv = lab.inventory()
    assert stat.S_IMODE(lab.inventory_file.stat().st_mode) == 0o600
    assert inv["subnet"] == "10.251.0.0/24" and inv["gateway"] == "10.251.0.1" and inv["bridge"] == BRIDGE
    assert inv["sshUser"] == "root" and Path(inv["sshPrivateKeyFile"]).is_absolute()
    assert sorted(inv["hosts"]) == sorted(DEFAULT_HOSTS)
    expected = {"mm1": 101, "mm2": 102, "mm3": 103, "proxy": 10, "mariadb": 20, "postgres": 21}
    for name, last in expected.items():
        host = inv["hosts"][name]
        assert host["address"] == f"10.251.0.{last}" and host["port"] == 22
        assert host["hostKey"].startswith("ssh-ed25519 ")
    keys = [h["hostKey"] for h in inv["hosts"].values()]
    assert len(set(keys)) == len(keys), "each host must generate its own host key"
    dbs = inv["databases"]
    assert dbs["mysql"]["host"] == "mariadb" and dbs["postgres"]["host"] == "postgres"
    assert all(d["name"] == "mattermost" and d["user"] == "mmuser" and len(d["password"]) >= 16 for d in dbs.values())


def test_hosts_boot_with_their_own_identity(lab: Lab) -> None:
    machine_ids = set()
    for name in DEFAULT_HOSTS:
        out = lab.ssh(name, "hostname; cat /etc/machine-id; ip -4 -o addr show dev eth0; systemctl is-system-running")
        hostname, machine_id, addr, state = out.stdout.split("\n")[:4]
        assert hostname == name
        assert f"{naming.address_of(name)}/24" in addr
        assert state in ("running", "degraded"), f"{name}: systemd state {state}"
        machine_ids.add(machine_id)
    assert len(machine_ids) == len(DEFAULT_HOSTS)


def test_host_key_on_the_host_is_the_inventory_key(lab: Lab) -> None:
    inv = lab.inventory()
    for name in ("mm1", "postgres"):
        on_host = lab.ssh(name, "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()
        assert on_host == inv["hosts"][name]["hostKey"]


def test_ssh_refuses_a_host_key_that_is_not_pinned(lab: Lab, tmp_path: Path) -> None:
    inv = lab.inventory()
    wrong = tmp_path / "known_hosts"
    # mm1's address with mm2's key: a strict client must refuse to talk to mm1.
    wrong.write_text(f"{inv['hosts']['mm1']['address']} {inv['hosts']['mm2']['hostKey']}\n")
    argv = lab.ssh_argv("mm1", "true")
    argv = [a.replace(str(lab.known_hosts_file), str(wrong)) for a in argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr
    assert lab.ssh("mm1", "true").returncode == 0


def test_netns_exec_probes_from_inside_a_host(lab: Lab) -> None:
    out = lab.netns_exec("mm1", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    assert "10.251.0.101/24" in out


# --------------------------------------------------------------------------- seeded "before" state


def test_proxy_serves_the_nodes_over_plain_http(lab: Lab) -> None:
    ping = _curl(f"http://{PROXY}/api/v4/system/ping")
    assert ping.returncode == 0, ping.stderr
    assert json.loads(ping.stdout)["status"] == "OK"
    seen = set()
    for _ in range(4 * len(NODES)):
        page = _curl(f"http://{PROXY}/")
        assert page.returncode == 0, page.stderr
        seen |= {n for n in NODES if f" on {n}<" in page.stdout}
    assert seen == set(NODES), "the reference site must balance over every node"
    ws = _curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{PROXY}/api/v4/websocket")
    assert ws.stdout == "400"


def test_proxy_runs_the_reference_site(lab: Lab) -> None:
    out = lab.ssh(
        "proxy",
        "readlink -f /etc/nginx/sites-enabled/mattermost; test ! -e /etc/nginx/sites-enabled/default && echo nodefault;"
        " cat /etc/nginx/sites-available/mattermost",
    ).stdout
    assert out.startswith("/etc/nginx/sites-available/mattermost\nnodefault\n")
    for node in NODES:
        assert f"server {naming.address_of(node)}:8065;" in out
    assert "proxy_pass http://backend;" in out and "ssl" not in out


def test_nodes_run_the_standin_as_mattermost(lab: Lab) -> None:
    pg = lab.inventory()["databases"]["postgres"]
    for node in NODES:
        show = lab.ssh(node, "systemctl show mattermost -p Type -p User -p ActiveState -p UnitFileState").stdout
        assert set(show.split()) == {"Type=notify", "User=mattermost", "ActiveState=active", "UnitFileState=enabled"}
        version = lab.ssh(node, "/opt/mattermost/bin/mattermost --version").stdout
        assert "STAND-IN" in version
        cfg = json.loads(lab.ssh(node, "cat /opt/mattermost/config/config.json").stdout)
        assert cfg["ServiceSettings"]["ListenAddress"] == ":8065"
        assert cfg["ServiceSettings"]["ConnectionSecurity"] == ""
        assert cfg["SqlSettings"]["DriverName"] == "postgres"
        assert cfg["SqlSettings"]["DataSource"] == (
            f"postgres://mmuser:{pg['password']}@10.251.0.21:5432/mattermost?sslmode=disable&connect_timeout=10"
        )
        perms = lab.ssh(node, "stat -c '%a %U:%G' /opt/mattermost/config/config.json").stdout.strip()
        assert perms == "600 mattermost:mattermost"
        status = json.loads(lab.ssh(node, "curl -fsS http://127.0.0.1:8065/standin/status").stdout)
        db = status["subsystems"]["database"]
        assert db["healthy"] is True and db["tls"] is None and db["tlsMode"] == "disable"
        assert status["subsystems"]["web"]["tls"] is False


def test_databases_accept_mmuser_without_tls(lab: Lab) -> None:
    dbs = lab.inventory()["databases"]
    script = textwrap.dedent(
        """
        import json, sys, pymysql, psycopg2
        d = json.load(sys.stdin)
        my = pymysql.connect(host="10.251.0.20", user="mmuser", password=d["mysql"]["password"],
                             database="mattermost", ssl_disabled=True, connect_timeout=10)
        with my.cursor() as c:
            c.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
            my_tls = c.fetchone()[1]
        pg = psycopg2.connect(host="10.251.0.21", user="mmuser", password=d["postgres"]["password"],
                              dbname="mattermost", sslmode="disable", connect_timeout=10)
        with pg.cursor() as c:
            c.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            pg_tls = c.fetchone()[0]
        print(json.dumps({"mysql_tls": my_tls, "pg_tls": pg_tls}))
        """
    )
    lab.ssh("mm1", f"cat > /tmp/dbcheck.py <<'EOF'\n{script}\nEOF")
    out = lab.ssh("mm1", "python3 /tmp/dbcheck.py", input=json.dumps(dbs)).stdout
    assert json.loads(out) == {"mysql_tls": "", "pg_tls": False}
    # The servers offer no TLS at all in the "before" state.
    assert "DISABLED" in lab.ssh("mariadb", "mysql -N -e \"SHOW VARIABLES LIKE 'have_ssl'\"").stdout
    assert lab.ssh("postgres", "runuser -u postgres -- psql -tAc 'SHOW ssl'").stdout.strip() == "off"
    hba = lab.ssh("postgres", "grep -v '^#' /etc/postgresql/15/main/pg_hba.conf").stdout
    assert "host mattermost mmuser 10.251.0.0/24 scram-sha-256" in hba


def test_database_services_run_only_on_their_hosts(lab: Lab) -> None:
    for host in DEFAULT_HOSTS:
        states = lab.ssh(
            host, "systemctl is-enabled mariadb.service postgresql.service nginx.service", check=False
        ).stdout.split()
        expected = [
            "enabled" if host == "mariadb" else "disabled",
            "enabled" if host == "postgres" else "disabled",
            "enabled" if host == "proxy" else "disabled",
        ]
        assert states == expected, host


# --------------------------------------------------------------------------- stand-in refusals, for real


def _refusal(lab: Lab, node: str, env: str) -> str:
    """Start mattermost.service on ``node`` with ``env`` in a drop-in; return its journal. Restores the node."""
    dropin = "/etc/systemd/system/mattermost.service.d"
    cursor = lab.ssh(node, "journalctl -u mattermost -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p'")
    try:
        lab.ssh(node, f"mkdir -p {dropin} && cat > {dropin}/zz-test.env", input=env)
        lab.ssh(
            node,
            f"printf '[Service]\\nEnvironmentFile={dropin}/zz-test.env\\n' > {dropin}/zz-test.conf && systemctl daemon-reload",
        )
        started = lab.ssh(node, "systemctl restart mattermost", check=False, timeout=120)
        assert started.returncode != 0, "mattermost.service must refuse to start"
        return lab.ssh(
            node, f"journalctl -u mattermost --no-pager -o cat --after-cursor='{cursor.stdout.strip()}'"
        ).stdout
    finally:
        lab.ssh(node, f"rm -f {dropin}/zz-test.env {dropin}/zz-test.conf && systemctl daemon-reload")
        _wait_active(lab, node, "mattermost")


def test_standin_refuses_tls_without_certificate_files(lab: Lab) -> None:
    journal = _refusal(
        lab,
        "mm2",
        "MM_SERVICESETTINGS_CONNECTIONSECURITY=TLS\n"
        "MM_SERVICESETTINGS_TLSCERTFILE=/opt/mattermost/config/missing.crt\n"
        "MM_SERVICESETTINGS_TLSKEYFILE=/opt/mattermost/config/missing.key\n",
    )
    assert "refuses to start" in journal and "tls_cert_file_missing" in journal
    assert lab.ssh("mm2", "systemctl is-active mattermost").stdout.strip() == "active"


def test_standin_refuses_an_sslmode_lib_pq_rejects(lab: Lab) -> None:
    pg = lab.inventory()["databases"]["postgres"]
    dsn = f"postgres://mmuser:{pg['password']}@10.251.0.21:5432/mattermost?sslmode=required&connect_timeout=10"
    journal = _refusal(lab, "mm3", f"MM_SQLSETTINGS_DATASOURCE={dsn}\n")
    assert 'unsupported sslmode \\"required\\"' in journal or 'unsupported sslmode "required"' in journal
    assert pg["password"] not in journal, "the stand-in must not log the DSN password"


def test_standin_refuses_tls_to_a_database_without_tls(lab: Lab) -> None:
    my = lab.inventory()["databases"]["mysql"]
    journal = _refusal(
        lab,
        "mm1",
        "MM_SQLSETTINGS_DRIVERNAME=mysql\n"
        f"MM_SQLSETTINGS_DATASOURCE=mmuser:{my['password']}@tcp(10.251.0.20:3306)/mattermost?charset=utf8mb4&tls=true\n"
        "MMSTANDIN_DB_PING_ATTEMPTS=1\n",
    )
    assert "TLS requested but server does not support TLS" in journal


# --------------------------------------------------------------------------- up / down lifecycle (destructive: last)


def test_up_again_keeps_the_running_hosts(lab: Lab) -> None:
    before = {n: lab.host_pid(n) for n in DEFAULT_HOSTS}
    keys = {n: h["hostKey"] for n, h in lab.inventory()["hosts"].items()}
    lab.up(nodes=3, extra=[])
    assert {n: lab.host_pid(n) for n in DEFAULT_HOSTS} == before
    assert {n: h["hostKey"] for n, h in lab.inventory()["hosts"].items()} == keys


def test_five_nodes_and_back(lab: Lab) -> None:
    inv = lab.up(nodes=5, extra=["plugin"])
    assert inv["hosts"]["mm5"]["address"] == "10.251.0.105" and inv["hosts"]["plugin"]["address"] == "10.251.0.30"
    assert "server 10.251.0.105:8065;" in lab.ssh("proxy", "cat /etc/nginx/sites-available/mattermost").stdout
    assert lab.ssh("mm5", "systemctl is-active mattermost").stdout.strip() == "active"
    assert lab.ssh("mm1", "getent hosts plugin").stdout.split()[0] == "10.251.0.30"
    inv = lab.up(nodes=3, extra=[])
    assert sorted(inv["hosts"]) == sorted(DEFAULT_HOSTS)
    assert not {"mmtls-mm4", "mmtls-mm5", "mmtls-plugin"} & netns_names()


def test_down_leaves_nothing_behind(lab: Lab) -> None:
    pids = [lab.host_pid(n) for n in DEFAULT_HOSTS]
    assert all(pids)
    lab.down()
    assert _traces(lab) == {k: [] for k in _traces(lab)}
    assert not any(pid_alive(p) for p in pids if p)
    assert not lab.inventory_file.exists()
    lab.up(nodes=3, extra=[])


def test_up_clears_what_a_killed_run_left(lab: Lab) -> None:
    lab.down()
    env = dict(os.environ, MMTLS_LAB_DIR=str(lab.state_dir))
    cli = subprocess.Popen(
        [sys.executable, "-m", "lab.hosts", "up", "--nodes", "3", "--extra", ""],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Kill the CLI once every host has been started (pid recorded).
        deadline = time.monotonic() + 120
        while not all(lab.host_pid(n) for n in DEFAULT_HOSTS):
            assert cli.poll() is None or all(lab.host_pid(n) for n in DEFAULT_HOSTS), "up exited before the kill"
            assert time.monotonic() < deadline, "up never started every host"
            time.sleep(0.1)
    finally:
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()
    # Also kill one host's nspawn hard: its container keeps running orphaned
    # and its recorded PID goes stale.
    victim = lab.host_pid("mm1")
    assert victim
    os.kill(victim, signal.SIGKILL)
    orphans = {p for root in cgroup_roots() for p in _pids_under(root / "mm1")}
    left = _traces(lab)
    assert left["netns"] and left["links"] and left["cgroups"] and left["overlays"]
    assert (NETNS_DIR / "mmtls-mm1").exists() and orphans

    lab.up(nodes=3, extra=[])
    assert not any(pid_alive(p) for p in orphans | {victim})
    assert sorted(lab_nspawn_pids()) == sorted(DEFAULT_HOSTS)
    assert lab.status()["leftovers"] == []
    for name in DEFAULT_HOSTS:
        assert lab.ssh(name, "hostname").stdout.strip() == name
    ping = _curl(f"http://{PROXY}/api/v4/system/ping")
    assert json.loads(ping.stdout)["status"] == "OK"


def _pids_under(path: Path) -> set[int]:
    pids: set[int] = set()
    for procs in path.rglob("cgroup.procs") if path.is_dir() else []:
        pids |= {int(x) for x in procs.read_text().split()}
    return pids

"""No generated secret in the failure output of any command that fails (issue 10), on real hosts.

The replay engine prints a failed command as pulumi-command v1.2.1 does (the whole command text
and all of its output) and masks only secret config values, as the Pulumi engine does. The
lab stack has no secret config at all (the SSH key comes from the inventory file), so nothing
is masked here: whatever a failing command printed is in the output as a user would read it.

Each test forces real failures through the REAL program and the lab stack, then looks for
every generated secret -- the random database password, every line of every private key
(CA, server and node keys, cluster tunnel keys), the lab's SSH key, the database password the
hosts had before -- in:
- what `python -m lab.replay up` prints (the same step lines and summary, captured),
- every step error and the program error the replay keeps,
- the state file's values that are not secret (plain inputs and outputs, stack outputs).

Faults: the database host's sshd stopped mid-run; the database unreachable for the nodes
mid-run (their Mattermost cannot start; the failure shows its journal); `nginx -t` refusing the
site because of a file the program does not own; a node reached as a non-root user whose sudo
wants a password (every command of that node fails at once, naming user, host and fix). The
teleport token is not configured in the lab stack.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.ssh_keys import compact_private_key
from lab import replay
from lab.hosts import Lab
from lab.replay import report

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
NODES = ("mm1", "mm2", "mm3")
PRIVATE_KEY_TYPE = "tls:index/privateKey:PrivateKey"
PASSWORD_TYPE = "random:index/randomPassword:RandomPassword"
# the database host is unreachable for everybody else (its own checks over lo still work)
DB_UNREACHABLE = ["INPUT", "-i", "eth0", "-p", "tcp", "--dport", "5432", "-j", "REJECT", "--reject-with", "tcp-reset"]


@dataclass
class Run:
    """One `up` as the CLI runs it, with what it printed."""

    evaluation: replay.Evaluation
    printed: str


@dataclass
class Fresh:
    lab: Lab
    state: Path
    runs: list[Run] = field(default_factory=list)
    undo: list[Any] = field(default_factory=list)


def stack_value(key: str) -> Any:
    """A value of stacks/Pulumi.lab.yaml (config overrides replace whole top-level keys)."""
    data = yaml.safe_load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())["config"]
    return data[f"mattermost-transport-encryption:{key}"]


GENERATED_PASSWORD = {"database": {**stack_value("database"), "rotatePassword": True}}
"""The lab keeps the site's password by default; rotating makes pulumi-random generate one, which
is the secret this test must not find in any failure output."""


def up(f: Fresh, config: dict[str, Any] | None = None, on_step: Any = None) -> Run:
    """`python -m lab.replay up --stack lab`: the CLI's printer and summary, captured."""
    out = io.StringIO()
    printer = report.StepPrinter(out=out)

    def step(s: replay.Step) -> None:
        printer(s)
        if on_step is not None:
            on_step(s)

    ev = replay.up(ROOT, "lab", state_path=f.state, config={**GENERATED_PASSWORD, **(config or {})}, on_step=step)
    out.write(report.summary(ev) + "\n")
    run = Run(ev, out.getvalue())
    f.runs.append(run)
    return run


def failures(run: Run) -> str:
    return "\n".join(f"=== {s.name}\n{s.error}" for s in run.evaluation.failed_steps)


def pem_lines(pem: str) -> set[str]:
    """The body lines of a PEM/OpenSSH key (the BEGIN/END armour is not secret)."""
    return {line.strip() for line in pem.splitlines() if line.strip() and not line.startswith("-----")}


def generated_secrets(f: Fresh) -> dict[str, str]:
    """label -> value for every secret the program generated or logs in with, in any run so far."""
    found: dict[str, str] = {}
    records: list[replay.Resource] = []
    for run in f.runs:
        records += run.evaluation.resources
        records += run.evaluation.state.resources + run.evaluation.state.pending_deletes
    for res in records:
        if res.type == PRIVATE_KEY_TYPE and res.outputs:  # no outputs: a step that never ran (skipped)
            # A private key file also carries its public key: a line that is in the public key's
            # own PEM or OpenSSH form is public, every other line holds private material.
            public = f"{res.outputs.get('publicKeyPem') or ''}\n{res.outputs.get('publicKeyOpenssh') or ''}"
            private_lines = 0
            for name in ("privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"):
                for i, line in enumerate(sorted(pem_lines(str(res.outputs.get(name) or "")))):
                    if line not in public:
                        found[f"{res.name}.{name} line {i}"] = line
                        private_lines += 1
            assert private_lines >= 3, f"{res.name}: no private lines found"
        elif res.type == PASSWORD_TYPE and res.outputs.get("result"):
            found[f"{res.name}.result"] = str(res.outputs["result"])
    inventory = f.lab.inventory()
    key = Path(inventory["sshPrivateKeyFile"]).read_text()
    for i, line in enumerate(sorted(pem_lines(key))):
        found[f"lab SSH key line {i}"] = line
    # ... and in the form the connections carry it (components/ssh_keys.py)
    for i, line in enumerate(sorted(pem_lines(compact_private_key(key)))):
        found[f"lab SSH key, as connected with, line {i}"] = line
    found["the database password the hosts had before"] = inventory["databases"]["postgres"]["password"]
    assert any(k.startswith("database-password") for k in found), "no generated database password seen"
    assert sum(".privateKeyPem " in k for k in found) >= 10, "too few private keys seen"
    return found


def plain_strings(value: Any, path: str, secret: set[str]) -> Iterator[tuple[str, str]]:
    """(path, string) of every string leaf not at or under a secret path."""
    if path in secret or any(path.startswith(s + ".") or path.startswith(s + "[") for s in secret):
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from plain_strings(v, f"{path}.{k}" if path else k, secret)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from plain_strings(v, f"{path}[{i}]", secret)


def stored_plain_values(state_file: Path) -> Iterator[tuple[str, str]]:
    """Every value the state file holds in a place that is not secret."""
    data = json.loads(state_file.read_text())
    for res in data["resources"] + data["pendingDeletes"]:
        yield from (
            (f"{res['name']} inputs.{p}", v) for p, v in plain_strings(res["inputs"], "", set(res["secretInputs"]))
        )
        yield from (
            (f"{res['name']} outputs.{p}", v) for p, v in plain_strings(res["outputs"], "", set(res["secretOutputs"]))
        )
    yield from (("stack outputs." + p, v) for p, v in plain_strings(data["outputs"], "", set(data["secretOutputs"])))


def assert_no_leaks(f: Fresh) -> None:
    secrets = generated_secrets(f)
    # the values searched for are the ones the run used: the state holds them as secret values
    raw = f.state.read_text()
    used = [v for label, v in secrets.items() if label.startswith(("database-password", "pki-ca-key.privateKeyPem"))]
    assert len(used) >= 2 and all(v in raw for v in used), "the secrets searched for are not the stack's"
    places: list[tuple[str, str]] = []
    for n, run in enumerate(f.runs):
        places.append((f"run {n}: printed output", run.printed))
        places += [(f"run {n}: stored error of {s.name}", s.error) for s in run.evaluation.steps if s.error]
        places.append((f"run {n}: program error", run.evaluation.program_error))
    places += [(f"state file: {where}", value) for where, value in stored_plain_values(f.state)]
    leaks = [
        f"{label} in {where}" for where, text in places for label, value in secrets.items() if value and value in text
    ]
    assert leaks == [], "\n".join(leaks[:40])


@pytest.fixture
def fresh(lab: Lab, tmp_path: Path) -> Iterator[Fresh]:
    lab.down()
    lab.up(nodes=3, extra=[])
    f = Fresh(lab, tmp_path / "lab.json")
    yield f
    for undo in reversed(f.undo):
        undo()
    gone = replay.destroy(ROOT, "lab", state_path=f.state) if f.state.exists() else None
    if gone is None or not gone.ok:
        lab.down()
        lab.up(nodes=3, extra=[])


def converge(f: Fresh, config: dict[str, Any] | None = None) -> Run:
    run = up(f, config)
    assert run.evaluation.ok, failures(run)[-3000:] or run.evaluation.program_error
    return run


def wait_for_sshd(lab: Lab, host: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while lab.ssh(host, "true", check=False, timeout=15).returncode != 0:
        assert time.monotonic() < deadline, f"sshd on {host} did not come back"
        time.sleep(1)


def test_database_host_sshd_stopped_mid_run_leaks_nothing(fresh: Fresh) -> None:
    lab = fresh.lab
    stopped: list[str] = []

    def on_step(step: replay.Step) -> None:
        if step.name == "database-server-tls" and step.result == "ok" and not stopped:
            # the host's own systemd starts sshd again in 20 s; our session survives the stop
            # (KillMode=process)
            lab.ssh(
                "postgres",
                "systemd-run --quiet --on-active=20 --unit=test-leaks-ssh-back systemctl start ssh.service && "
                "systemctl stop ssh.service",
            )
            stopped.append(step.name)

    run = up(fresh, on_step=on_step)
    assert stopped, "the fault was never injected"
    failed = run.evaluation.failed_steps
    print(run.printed[-3000:])
    # (the rotation's own login commands run on that host too: components/database.py)
    on_db_host = {"database-pg-hba", "database-db-user-mmuser", "database-login-hba", "database-login-mmuser"}
    assert failed and {s.name for s in failed} <= on_db_host, failures(run)
    # dialWithRetry's words: dialErrorLimit (5) retries, then the TCP error, printed as is
    refused = "after 5 failed attempts: dial tcp 10.251.0.21:22: connect: connection refused"
    assert all(refused in s.error for s in failed), failures(run)
    assert refused in run.printed

    wait_for_sshd(lab, "postgres")
    converge(fresh)
    assert_no_leaks(fresh)


def test_database_unreachable_for_the_nodes_mid_run_leaks_nothing(fresh: Fresh) -> None:
    lab = fresh.lab
    blocked: list[str] = []
    # a short start timeout: a node that cannot reach its database fails its switch in seconds
    config = {"mattermost": {**stack_value("mattermost"), "startTimeoutSeconds": 20}}

    def on_step(step: replay.Step) -> None:
        if step.name == "database-db-user-mmuser" and step.result == "ok" and not blocked:
            lab.netns_exec("postgres", ["iptables", "-w", "-I", *DB_UNREACHABLE])
            blocked.append(step.name)

    fresh.undo.append(lambda: lab.netns_exec("postgres", ["iptables", "-w", "-D", *DB_UNREACHABLE], check=False))
    run = up(fresh, config, on_step)
    assert blocked, "the fault was never injected"
    failed = run.evaluation.failed_steps
    print(run.printed[-4000:])
    assert [s.name for s in failed] == ["mm1-tls-files"], failures(run)
    error = failed[0].error
    # the node's own words: its journal with the database errors, the whole command text
    assert "--- journalctl -u mattermost.service" in error and "ping DB" in error, error[-3000:]
    assert error.startswith("Process exited with status ") and ': running "' in error

    lab.netns_exec("postgres", ["iptables", "-w", "-D", *DB_UNREACHABLE])
    converge(fresh, config)
    assert_no_leaks(fresh)


def test_nginx_refusing_the_site_leaks_nothing(fresh: Fresh) -> None:
    lab = fresh.lab
    conflict = "/etc/nginx/conf.d/zz-test-leaks-conflict.conf"
    lab.ssh("proxy", f"printf '%s\\n' 'include /etc/nginx/snippets/test-leaks-missing.conf;' > {conflict}")
    fresh.undo.append(lambda: lab.ssh("proxy", f"rm -f {conflict}", check=False))
    run = up(fresh)
    failed = run.evaluation.failed_steps
    print(run.printed[-3000:])
    assert failed and all(s.name.startswith("proxy-") for s in failed), failures(run)
    err = failures(run)
    assert "[emerg]" in err and "test-leaks-missing.conf" in err, err[-3000:]

    lab.ssh("proxy", f"rm -f {conflict}")
    converge(fresh)
    # and once more against the converged stack: a changed site refused by nginx -t
    lab.ssh("proxy", f"printf '%s\\n' 'include /etc/nginx/snippets/test-leaks-missing.conf;' > {conflict}")
    changed = {**stack_value("proxy"), "upstreamKeepalive": 16}
    again = up(fresh, {"proxy": changed})
    assert again.evaluation.failed_steps and "[emerg]" in failures(again), failures(again)[-3000:]
    assert_no_leaks(fresh)


BAD_SUDO_USER = "mmbadsudo"
ADD_BAD_SUDO_USER = f"""set -eu
useradd -m -s /bin/sh {BAD_SUDO_USER}
install -d -m 0700 -o {BAD_SUDO_USER} -g {BAD_SUDO_USER} /home/{BAD_SUDO_USER}/.ssh
install -m 0600 -o {BAD_SUDO_USER} -g {BAD_SUDO_USER} /root/.ssh/authorized_keys /home/{BAD_SUDO_USER}/.ssh/
echo '{BAD_SUDO_USER} ALL=(ALL) ALL' > /etc/sudoers.d/{BAD_SUDO_USER}
chmod 0440 /etc/sudoers.d/{BAD_SUDO_USER}
"""
"""A user who may sudo with a password only (the account has none: sudo -n can never succeed)."""


def test_a_sudo_that_wants_a_password_leaks_nothing_and_names_host_and_fix(fresh: Fresh) -> None:
    lab = fresh.lab
    converge(fresh)  # as root: every key, certificate and the generated password exist and are in use
    lab.ssh("mm2", ADD_BAD_SUDO_USER)
    fresh.undo.append(
        lambda: lab.ssh("mm2", f"rm -f /etc/sudoers.d/{BAD_SUDO_USER}; userdel -r {BAD_SUDO_USER} 2>/dev/null || :")
    )
    nodes = [{"name": "mm1"}, {"name": "mm2", "ssh": {"user": BAD_SUDO_USER}}, {"name": "mm3"}]
    run = up(fresh, {"nodes": nodes})
    failed = run.evaluation.failed_steps
    print(run.printed[-3000:])
    # every command on mm2 is updated (its connection changed) and the first ones fail at once
    assert failed and all(s.name.startswith("mm2-") or "10.251.0.102" in s.name for s in failed), failures(run)
    hint = (
        f"mattermost-transport-encryption: {BAD_SUDO_USER}@mm2 cannot run sudo without a password (sudo -n failed): "
        "give it passwordless sudo (NOPASSWD in /etc/sudoers.d) or connect as root"
    )
    assert all(hint in s.error and s.error.startswith("Process exited with status 1: ") for s in failed), failures(run)
    assert hint in run.printed
    # nothing ran as root on mm2: it still serves what the converged run installed
    assert lab.ssh("mm2", "test -s /etc/systemd/system/mattermost.service.d/50-transport-encryption.conf").returncode == 0

    converge(fresh)  # back to root: mm2's commands update again and succeed
    assert_no_leaks(fresh)

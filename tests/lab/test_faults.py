"""Faults during `up`, on the real hosts (issue 6): a run that cannot finish fails with the host's
own words, leaves nothing half-switched behind, and converges once the fault is gone.

Every test starts from a freshly seeded "before" state, runs the REAL program through the replay
engine, injects one fault, checks what the failed run left on the hosts, removes the fault,
converges, audits, and destroys back to the before state (compared file by file).

1. A node drops off the network mid-run (after its own first steps; or right before its own
   switch, with the node before it already on TLS): the run fails naming it, every other node
   is fully before or fully switched and NGINX reaches each the way it answers, the site
   answers; once the node is back, `up` converges and the audit passes.
2. `nginx -t` fails because of a file the program does not own: the previous site is back, the
   site never stops answering, the run shows nginx's own error; without the file, `up` converges.
3. PostgreSQL does not come back with TLS (another conf.d file breaks ssl=on only): its previous
   config is back, plain logins work as before, the run shows the server's own log lines.
4. A node does not come back with TLS (its key unreadable to the service user): its previous
   files are back, it serves its previous certificate again, the site never stops answering.

Errors are read with `show_secrets=True`, as `pulumi up` shows them: the provider puts a failed
command's output into its error, and the replay engine withholds it by default when the
command's stdout/stderr are secret outputs (they are for every command whose stdin carries a key).
Known secret values stay masked either way.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import replay
from lab.hosts import Lab
from tests.helpers.lab import PROXY_IP, SERVER_NAME, diff, ping_through_proxy, snapshot, without_helper
from tools import audit as audit_tool
from tools.load import Load

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ("mm1", "mm2", "mm3", "proxy", "postgres", "mariadb")
SITE_FILE = "/etc/nginx/sites-available/mattermost"
UPSTREAM_NAME = "mattermost-app.internal"
DROPIN_DIR = "/etc/systemd/system/mattermost.service.d/"
NODES = ("mm1", "mm2", "mm3")
ADDRESS = {"mm1": "10.251.0.101", "mm2": "10.251.0.102", "mm3": "10.251.0.103"}
NODE_STEPS = {f"{n}-{k}" for n in NODES for k in ("db-ca", "tls-files")}
SESSION_ENDED = re.compile(
    r"wait: remote command exited without exit status or exit signal: running "
    r"|EOF: running |ssh: unexpected packet in response to channel open: <nil>$|could not set environment variable "
)
"""pulumi-command's error for a session whose connection ended (no address in it)."""
# a host dropping off the network: every TCP segment reaching it is answered with a reset, so
# new SSH sessions are refused and open ones (and its own outgoing connections) break at once
DROP_OFF = ["INPUT", "-i", "eth0", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"]


@dataclass
class Fresh:
    """A lab in its before state, and where this test keeps its stack state."""

    lab: Lab
    state: Path
    before: dict[str, dict[str, str]]
    restored: bool = False
    """Set once the test itself destroyed the stack and found every host as before."""
    outputs: dict[str, Any] = field(default_factory=dict)


def stack_value(key: str) -> Any:
    """A value of stacks/Pulumi.lab.yaml (config overrides replace whole top-level keys)."""
    data = yaml.safe_load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())["config"]
    return data[f"mattermost-transport-encryption:{key}"]


def up(f: Fresh, config: dict[str, Any] | None = None, **kw: Any) -> replay.Evaluation:
    return replay.up(ROOT, "lab", state_path=f.state, config=config or {}, show_secrets=True, **kw)


def converge(f: Fresh, config: dict[str, Any] | None = None) -> replay.Evaluation:
    ev = up(f, config)
    assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-1500:]}" for s in ev.failed_steps) or ev.program_error
    f.outputs = ev.outputs
    return ev


def ran(ev: replay.Evaluation) -> set[str]:
    """Resources whose step ran and succeeded in this run (not `same`)."""
    return {s.name for s in ev.steps if s.result == "ok" and s.op != "same"}


def errors(ev: replay.Evaluation) -> str:
    return "\n".join(f"=== {s.name}\n{s.error}" for s in ev.failed_steps)


def audit(f: Fresh) -> int:
    return audit_tool.main(["--stack", "lab", "--state", str(f.state)])


def plain_status(lab: Lab, url: str, host_header: str | None = None) -> str:
    """HTTP status of a plain GET from the proxy ("000" if nothing answered)."""
    header = f"-H 'Host: {host_header}' " if host_header else ""
    out = lab.ssh("proxy", f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {header}{url}", check=False)
    return out.stdout.strip()


def tls_answers(lab: Lab, ca_pem: str, name: str, address: str, port: int) -> bool:
    """A verified HTTPS ping from the proxy to `name` at `address`:`port` answered 200."""
    r = lab.ssh(
        "proxy",
        f'ca=$(mktemp); trap \'rm -f "$ca"\' EXIT; cat > "$ca"\n'
        f'curl -sf -o /dev/null --max-time 5 --cacert "$ca" --resolve {name}:{port}:{address} '
        f"https://{name}:{port}/api/v4/system/ping",
        input=ca_pem,
        check=False,
    )
    return r.returncode == 0


def site_mode(lab: Lab) -> str:
    """How the live NGINX site reaches the nodes: "plain", "tls" or both ("transition")."""
    site = lab.ssh("proxy", f"cat {SITE_FILE}").stdout
    plain = re.search(r"^\s*proxy_pass\s+http://", site, re.M) is not None
    tls = re.search(r"^\s*proxy_pass\s+https://", site, re.M) is not None
    return "transition" if plain and tls else "plain" if plain else "tls"


def node_mode(lab: Lab, node: str, ca_pem: str) -> str:
    """How a node answers NGINX: "plain", "tls" (verified for the upstream name) or "down"."""
    if plain_status(lab, f"http://{ADDRESS[node]}:8065/api/v4/system/ping") == "200":
        return "plain"
    return "tls" if tls_answers(lab, ca_pem, UPSTREAM_NAME, ADDRESS[node], 8065) else "down"


def assert_consistent(lab: Lab, nodes: tuple[str, ...], ca_pem: str) -> None:
    """Nothing half-switched: every node is fully before (plain, no TLS drop-in) or fully switched
    (verified TLS, drop-in), NGINX's live site reaches it the way it answers, and the site answers."""
    mode = site_mode(lab)
    allowed = {"plain": {"plain"}, "tls": {"tls"}, "transition": {"plain", "tls"}}[mode]
    for node in nodes:
        got = node_mode(lab, node, ca_pem)
        assert got in allowed, f"{node} answers {got}, the live NGINX site ({mode}) expects {allowed}"
        dropins = lab.ssh(node, f"ls {DROPIN_DIR} 2>/dev/null", check=False).stdout
        assert ("50-transport-encryption.conf" in dropins) == (got == "tls"), f"{node}: {got} but drop-ins {dropins!r}"
    if mode == "plain":
        answered = sum(plain_status(lab, "http://127.0.0.1/api/v4/system/ping", SERVER_NAME) == "200" for _ in range(6))
        assert answered == 6, f"{answered}/6 plain pings through NGINX answered"
    else:
        assert ping_through_proxy(ca_pem) == 5


def snapshot_without(lab: Lab, host: str, stray: str) -> dict[str, str]:
    """`snapshot` of a host minus one file the test put there itself and the host helper's own
    files: what a failed run must have put back is the host's configuration."""
    now = snapshot(lab, host)
    assert now.pop(stray.lstrip("/"), None) is not None, f"{stray} is not on {host}"
    return without_helper(now)


def destroy_and_compare(f: Fresh) -> None:
    gone = replay.destroy(ROOT, "lab", state_path=f.state)
    assert gone.ok, errors(gone)
    for host, before in f.before.items():
        assert diff(before, snapshot(f.lab, host)) == [], host
    f.restored = True


def serves_audits_and_destroys(f: Fresh, ca_pem: str) -> None:
    """The end of every test here: the site answers through the proxy (verified with `ca_pem`),
    the audit passes, and destroy gives back every byte."""
    assert ping_through_proxy(ca_pem) == 5
    assert audit(f) == 0
    destroy_and_compare(f)


@pytest.fixture
def fresh(lab: Lab, tmp_path: Path) -> Iterator[Fresh]:
    lab.down()
    lab.up(nodes=3, extra=[])
    f = Fresh(lab, tmp_path / "lab.json", {h: snapshot(lab, h) for h in HOSTS})
    yield f
    if not f.restored:
        # the test failed before it restored the lab: leave the next module a clean before state
        for host in NODES:
            lab.netns_exec(host, ["iptables", "-w", "-D", *DROP_OFF], check=False)
        if f.state.exists():
            replay.destroy(ROOT, "lab", state_path=f.state)
        lab.down()
        lab.up(nodes=3, extra=[])


@pytest.mark.parametrize(
    "drop_after",
    [
        "mm2-cluster-account",  # mm2's own first steps went through; it drops off before the rest
        "mm1-tls-files",  # mm1 already serves TLS; mm2 drops off right before its own switch
    ],
)
def test_a_node_that_drops_off_mid_run_fails_the_run_by_name_and_nothing_is_half_switched(
    fresh: Fresh, drop_after: str
) -> None:
    lab = fresh.lab
    dropped = threading.Event()

    def on_step(step: replay.Step) -> None:
        if step.name == drop_after and step.result == "ok" and not dropped.is_set():
            lab.netns_exec("mm2", ["iptables", "-w", "-I", *DROP_OFF])
            dropped.set()

    ev = up(fresh, on_step=on_step)
    assert dropped.is_set(), "the fault was never injected"
    assert not ev.ok
    failed = ev.failed_steps
    print(errors(ev)[-3000:])
    # every failure is about mm2 (its own steps, or a peer's tunnel to it), and says which host
    assert failed and all(s.name.startswith("mm2-") or s.name.endswith("-mm2") for s in failed), errors(ev)
    # each names the host's address (a dial error, Go's read error), or is mm2's own step failing
    # with the words x/crypto gives pulumi-command when the connection ends under a session: those
    # carry no address in the real provider either (lab.replay.runners, tests/replay/test_replay_dropped_host.py)
    for s in failed:
        assert "internal error" not in s.error, errors(ev)
        assert ADDRESS["mm2"] in s.error or (s.name.startswith("mm2-") and SESSION_ENDED.match(s.error)), errors(ev)
    assert {"mm2-preflight", "mm2-cluster-account", drop_after} <= ran(ev)

    # the other hosts are not half-switched: NGINX reaches every node the way it answers
    assert_consistent(lab, ("mm1", "mm3"), ev.outputs["caCertPem"])

    # mm2 is back: the next run finishes what is left, and everything checks out
    lab.netns_exec("mm2", ["iptables", "-w", "-D", *DROP_OFF])
    ev = converge(fresh)
    assert ran(ev) >= {"mm2-tls-files", "mm3-tls-files", "proxy-site"}
    serves_audits_and_destroys(fresh, fresh.outputs["caCertPem"])


def test_nginx_refusing_the_new_site_keeps_the_old_one_and_the_site_answering(fresh: Fresh) -> None:
    lab = fresh.lab
    converge(fresh)
    ca = fresh.outputs["caCertPem"]
    conflict = "/etc/nginx/conf.d/zz-test-faults-conflict.conf"
    proxy_before = snapshot(lab, "proxy")
    # a file the program does not own, pulling in a snippet that does not exist
    lab.ssh("proxy", f"printf '%s\\n' 'include /etc/nginx/snippets/test-faults-missing.conf;' > {conflict}")
    changed_proxy = {**stack_value("proxy"), "upstreamKeepalive": 16}

    with Load(SERVER_NAME, PROXY_IP, ca) as load:
        ev = up(fresh, {"proxy": changed_proxy})
    failed = ev.failed_steps
    assert failed and all(s.name.startswith("proxy-") for s in failed), errors(ev)
    err = errors(ev)
    print(err[-2000:])
    # nginx's own words, then ours
    assert "[emerg]" in err and "test-faults-missing.conf" in err and conflict in err, err[-2000:]
    assert "test failed" in err and "validation failed; the previous configuration is back in place" in err
    # the previous site and certificates are back byte for byte (only the stray file differs)
    assert diff(without_helper(proxy_before), snapshot_without(lab, "proxy", conflict)) == []
    assert "keepalive 32;" in lab.ssh("proxy", f"cat {SITE_FILE}").stdout
    assert load.result.sent > 0 and load.result.failed == 0, f"the site stopped answering: {load.result}"
    assert ping_through_proxy(ca) == 5

    lab.ssh("proxy", f"rm -f {conflict}")
    ev = converge(fresh, {"proxy": changed_proxy})
    assert {s.name for s in ev.steps if s.op != "same"} <= {"proxy-site", "proxy-transition"}
    assert "keepalive 16;" in lab.ssh("proxy", f"cat {SITE_FILE}").stdout
    serves_audits_and_destroys(fresh, ca)


def test_postgres_not_coming_back_with_tls_gets_its_previous_config_and_plain_logins(fresh: Fresh) -> None:
    lab = fresh.lab
    conf_dir = lab.ssh("postgres", "ls -d /etc/postgresql/*/main").stdout.strip()
    unit = f"postgresql@{conf_dir.split('/')[3]}-main"
    fault = f"{conf_dir}/conf.d/95-test-faults.conf"
    # harmless while ssl = off (the before state), fatal at the start of a server with ssl = on
    lab.ssh("postgres", f"printf '%s\\n' \"ssl_ciphers = 'NO-SUCH-CIPHER'\" > {fault}; chmod 0644 {fault}")
    inv = lab.inventory()["databases"]["postgres"]
    plain_login = (
        f"PGPASSWORD={inv['password']} psql 'host=10.251.0.21 dbname=mattermost user=mmuser sslmode=disable' "
        "-Atc 'select 1'"
    )
    lab.ssh("postgres", f"systemctl restart {unit}")
    assert lab.ssh("mm1", plain_login).stdout.strip() == "1", "the fault must not matter before the switch"

    ev = up(fresh)
    assert [s.name for s in ev.failed_steps] == ["database-server-tls"], errors(ev)
    err = ev.failed_steps[0].error
    print(err[-2500:])
    # the server's own log lines, then ours
    assert "could not set the cipher list" in err and "--- last log lines of" in err, err[-2500:]
    assert "activation failed; the previous configuration is back in place" in err
    assert inv["password"] not in err
    assert not (ran(ev) & (NODE_STEPS | {"database-pg-hba", "database-db-user-mmuser"})), ran(ev)
    # the server runs its previous configuration: only the stray file differs, plain logins work
    assert diff(without_helper(fresh.before["postgres"]), snapshot_without(lab, "postgres", fault)) == []
    assert lab.ssh("mm1", plain_login).stdout.strip() == "1"
    assert_consistent(lab, NODES, ev.outputs["caCertPem"])

    lab.ssh("postgres", f"rm -f {fault}")
    converge(fresh)
    serves_audits_and_destroys(fresh, fresh.outputs["caCertPem"])


def test_a_node_not_coming_back_with_tls_gets_its_previous_files_and_serves_again(fresh: Fresh) -> None:
    lab = fresh.lab
    converge(fresh)
    ca = fresh.outputs["caCertPem"]
    fingerprint = fresh.outputs["nodes"]["mm2"]["certFingerprintSha256"]
    mm2_before = snapshot(lab, "mm2")
    # a wrong service group for mm2: its key would be root:nogroup 0640, unreadable to mattermost
    nodes = [{"name": "mm1"}, {"name": "mm2", "serviceGroup": "nogroup"}, {"name": "mm3"}]

    with Load(SERVER_NAME, PROXY_IP, ca) as load:
        ev = up(fresh, {"nodes": nodes})
    assert [s.name for s in ev.failed_steps] == ["mm2-tls-files"], errors(ev)
    err = ev.failed_steps[0].error
    print(err[-2500:])
    # the node's own words (systemd and the server's journal), then ours
    assert "--- journalctl -u mattermost.service" in err and "Permission denied" in err, err[-2500:]
    assert "node.key" in err
    assert "activation failed; the previous configuration is back in place" in err
    # every file (drop-in, env, key with its group, cert) is back as it was, and mm2 serves its cert
    assert diff(mm2_before, snapshot(lab, "mm2")) == []
    served = lab.ssh(
        "proxy",
        f"echo | openssl s_client -connect {ADDRESS['mm2']}:8065 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
    ).stdout
    assert fingerprint in served, served
    lab.ssh(
        "mm2",
        "curl -sf --cacert /etc/mattermost-tls/ca.crt --resolve mattermost-app.internal:8065:127.0.0.1 "
        "https://mattermost-app.internal:8065/api/v4/system/ping",
    )
    assert load.result.sent > 0 and load.result.failed == 0, f"the site stopped answering: {load.result}"

    # the failed change left the old record in the state and the old files on the host: nothing to do
    ev = converge(fresh)
    assert {s.name: s.op for s in ev.steps if s.op != "same"} == {}
    assert audit(fresh) == 0
    destroy_and_compare(fresh)

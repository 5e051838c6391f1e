"""GitLab's bundled Mattermost and the Teleport plugin host, applied by the real program to real
lab hosts (issue 5, the lab part).

GitLab itself cannot be installed in the lab, so the `gitlab` host is seeded with what a GitLab
Omnibus host has that the program touches: a realistic /etc/gitlab/gitlab.rb (with an earlier,
plain-HTTP Mattermost set-up) and a clearly named stand-in for /usr/bin/gitlab-ctl that records
its calls and, for `reconfigure`, does the one thing Omnibus' reconfigure does to our files:
`c_rehash /etc/gitlab/trusted-certs` (Omnibus' add_trusted_certs recipe runs it there). The
`plugin` host is a plain Debian host; the plugin binary is absent, as the program expects.

The lifecycle: seed -> up (stack `lab`, gitlab with the external PostgreSQL, teleport) -> the
gitlab.rb block is there, Ruby accepts and evaluates it right, the DSN it carries logs in with
sslmode=verify-full from the gitlab host as GitLab's own role to its own database (created for
it), admitted by its own hostssl line and refused without TLS by its own reject line -> the plugin's TOML
parses back, its unit passes systemd-analyze verify and runs with its trust setting, the plugin
host reaches Mattermost over verified HTTPS -> a CA rotation reaches both hosts -> up again
changes nothing -> destroy: both hosts and the database host are back byte for byte, GitLab's
role and database gone from the server.

Tests in this module run in order and share the lab; each asserts one promise.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import replay
from lab.hosts import Lab
from tests.helpers.gitlab import HARNESS
from tests.helpers.lab import OrderedCtx, changed, diff
from tests.helpers.lab import snapshot as lab_snapshot
from tools import audit as audit_tool

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
PROXY_IP = "10.251.0.10"
GITLAB_IP = "10.251.0.31"
PLUGIN_IP = "10.251.0.30"
SERVER_NAME = "mattermost.lab.internal"
GITLAB_MM_HOST = "chat.gitlab.lab.internal"
TOKEN = "k8sd7f3mq1zr9xwbt5nyhce2ua"  # shaped like a Mattermost bot token; lab only
HBA = "/etc/postgresql/15/main/pg_hba.conf"

GITLAB_RB = "/etc/gitlab/gitlab.rb"
GITLAB_CTL_LOG = "/var/log/gitlab-ctl-standin.calls"
SSL_DIR = "/etc/gitlab/ssl"
GITLAB_CA = "/etc/gitlab/trusted-certs/mattermost-transport-ca.crt"
PLUGIN_TOML = "/etc/teleport-mattermost.toml"
PLUGIN_UNIT = "/etc/systemd/system/teleport-mattermost.service"
PLUGIN_CA = "/etc/teleport-mattermost/ca/mattermost-transport-ca.crt"
PLUGIN_BINARY = "/usr/local/bin/teleport-mattermost"

# What an Omnibus host's gitlab.rb looks like after a few years of edits: the external URL, mail,
# backups, and the bundled Mattermost set up earlier over plain HTTP with its bundled database.
SEED_GITLAB_RB = f"""\
## GitLab configuration settings
##! This file is generated during initial installation and **is not** modified
##! during upgrades.

external_url 'https://gitlab.lab.internal'

gitlab_rails['time_zone'] = 'Europe/Berlin'
gitlab_rails['gitlab_email_from'] = 'gitlab@lab.internal'
gitlab_rails['smtp_enable'] = true
gitlab_rails['smtp_address'] = "smtp.lab.internal"
gitlab_rails['smtp_port'] = 587
gitlab_rails['backup_keep_time'] = 604800

nginx['redirect_http_to_https'] = true
letsencrypt['enable'] = false

## GitLab Mattermost
mattermost_external_url 'http://{GITLAB_MM_HOST}'
mattermost['team_site_name'] = "Lab chat"
# mattermost_nginx['redirect_http_to_https'] = true

prometheus_monitoring['enable'] = false
"""

# A clearly named stand-in: GitLab cannot be installed in the lab. It records every call (the
# test reads the log) and, for `reconfigure`, rehashes trusted-certs as Omnibus' reconfigure does,
# so hash links to our CA appear on the host the way they would on a real GitLab.
GITLAB_CTL_STANDIN = f"""\
#!/bin/sh
# STAND-IN for GitLab Omnibus' gitlab-ctl, seeded by tests/lab/test_gitlab_teleport.py.
# Not GitLab: records its arguments in {GITLAB_CTL_LOG} and exits 0; `reconfigure` also runs
# c_rehash on /etc/gitlab/trusted-certs, as Omnibus' add_trusted_certs recipe does.
echo "$*" >> {GITLAB_CTL_LOG}
if [ "$1" = reconfigure ] && [ -d /etc/gitlab/trusted-certs ]; then
  c_rehash /etc/gitlab/trusted-certs >/dev/null
fi
exit 0
"""

SEED = f"""\
set -eu
install -d -m 0775 -o root -g root /etc/gitlab
install -d -m 0755 -o root -g root /etc/gitlab/trusted-certs
base64 -d > {GITLAB_RB}.new <<'EOF'
{base64.b64encode(SEED_GITLAB_RB.encode()).decode()}
EOF
install -m 0600 -o root -g root {GITLAB_RB}.new {GITLAB_RB}
rm -f {GITLAB_RB}.new
base64 -d > /usr/bin/gitlab-ctl.new <<'EOF'
{base64.b64encode(GITLAB_CTL_STANDIN.encode()).decode()}
EOF
install -m 0755 -o root -g root /usr/bin/gitlab-ctl.new /usr/bin/gitlab-ctl
rm -f /usr/bin/gitlab-ctl.new
"""

# Everything the program may touch on these hosts, and a good deal it must not: files with
# content hash, mode and owner, symlinks with their target, directories with mode and owner
# (a directory the program created and left behind counts as a change).
SNAPSHOT = r"""
cd /
find etc opt usr/local usr/bin/gitlab-ctl var/lib/mattermost-transport-encryption -xdev \
  \( -type f -o -type l -o -type d \) 2>/dev/null \
  | grep -v -e '^etc/ld.so.cache$' | LC_ALL=C sort | while IFS= read -r f; do
  if [ -L "$f" ]; then echo "L $(readlink "$f") $f"
  elif [ -d "$f" ]; then echo "D $(stat -c %a.%U.%G "$f") $f"
  else echo "$(sha256sum < "$f" | cut -c1-64) $(stat -c %a.%U.%G "$f") $f"; fi
done
"""

CONFIG: dict[str, Any] = {
    "gitlab": {
        "enabled": True,
        "host": "gitlab",
        "mattermostExternalUrl": f"https://{GITLAB_MM_HOST}",
        "externalPostgres": True,
    },
    "teleport": {
        "enabled": True,
        "host": "plugin",
        "authAddr": "teleport.lab.internal:3025",
        "recipients": ["town-square/access-requests", "oncall@lab.internal"],
    },
    "teleportToken": replay.Secret(TOKEN),
}


class Ctx(OrderedCtx):
    def __init__(self, lab: Lab, state: Path):
        super().__init__(lab, state, CONFIG)


def snapshot(lab: Lab, host: str) -> dict[str, str]:
    return lab_snapshot(lab, host, SNAPSHOT)


def run_up(ctx: Ctx) -> replay.Evaluation:
    ev = replay.up(ROOT, "lab", state_path=ctx.state, config=ctx.config)
    # the tail of an error holds the host's own message; the head is the command text
    assert ev.ok, "\n".join(f"{s.name}: ...{s.error[-1500:]}" for s in ev.failed_steps) or ev.program_error
    return ev


def gitlab_ctl_calls(lab: Lab) -> list[str]:
    return lab.ssh("gitlab", f"cat {GITLAB_CTL_LOG} 2>/dev/null || true").stdout.splitlines()


def evaluate_gitlab_rb(lab: Lab) -> dict[str, Any]:
    """gitlab.rb as Omnibus would evaluate it (instance_eval), with the host's own Ruby."""
    r = lab.ssh("gitlab", f"ruby - {GITLAB_RB}", input=HARNESS)
    return dict(json.loads(r.stdout))


# the DSN as gitlab.rb hands it to the bundled Mattermost, evaluated on the host itself
DSN_FROM_GITLAB_RB = (
    "dsn=$(ruby - "
    + GITLAB_RB
    + " <<'RUBY' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"mattermost\"][\"sql_data_source\"])'\n"
    + HARNESS
    + "\nRUBY\n)\n"
)


def psql_whoami() -> str:
    """Log in with the DSN in $dsn and report whether the session is TLS, with which protocol."""
    return 'psql "$dsn" -Atc "select ssl || \' \' || version from pg_stat_ssl where pid = pg_backend_pid()" 2>&1'


def stat(lab: Lab, host: str, *paths: str) -> list[str]:
    return lab.ssh(host, "stat -c '%a %U %G' " + " ".join(shlex.quote(p) for p in paths)).stdout.split("\n")[:-1]


@pytest.fixture(scope="module")
def ctx(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    # a fresh "before" state with the two extra hosts, the gitlab host seeded like an Omnibus host
    lab.down()
    lab.up(nodes=3, extra=["plugin", "gitlab"])
    lab.ssh("gitlab", SEED)
    c = Ctx(lab, tmp_path_factory.mktemp("state") / "lab.json")
    for host in ("gitlab", "plugin", "postgres"):
        c.before[host] = snapshot(lab, host)
    yield c
    if c.state.exists() and json.loads(c.state.read_text()).get("resources"):
        replay.destroy(ROOT, "lab", state_path=c.state)  # a failed test left resources behind
    # the standard lab shape for the modules after this one
    lab.up(nodes=3, extra=[])


def test_up_creates_gitlab_and_teleport_resources(ctx: Ctx) -> None:
    ev = run_up(ctx)
    counts = ev.counts()
    assert counts.get("create", 0) == len(ev.steps), counts
    created = {s.name for s in ev.steps}
    assert {
        "gitlab",
        "gitlab-gitlab-mattermost-cert",
        "gitlab-gitlab-tls-files",
        "gitlab-gitlab-rb",
        "teleport",
        "plugin-teleport-mattermost-files",
        "plugin-teleport-mattermost-enable",
        "database-pg-hba",
        "database-gitlab-pg-hba",
        "database-gitlab-db-user-gitlab_mmuser",
        "database-gitlab-enforce-tls",
    } <= created
    ctx.outputs = ev.outputs
    assert ev.outputs["gitlabMattermostUrl"] == f"https://{GITLAB_MM_HOST}"
    assert ev.outputs["teleportPlugin"]["mattermostUrl"] == f"https://{SERVER_NAME}"
    enable = ev.get("plugin-teleport-mattermost-enable")
    assert "plugin binary /usr/local/bin/teleport-mattermost is absent" in enable.outputs["stdout"]


def test_gitlab_rb_keeps_every_byte_and_gains_one_block_ruby_accepts(ctx: Ctx) -> None:
    lab = ctx.lab
    text = lab.ssh("gitlab", f"cat {GITLAB_RB}").stdout
    assert text.startswith(SEED_GITLAB_RB), "the operator's settings stay as they were, byte for byte"
    block = text[len(SEED_GITLAB_RB) :]
    lines = block.splitlines()
    assert lines[0] == "# BEGIN mattermost-transport-encryption gitlab-gitlab-rb"
    assert lines[-1] == "# END mattermost-transport-encryption gitlab-gitlab-rb"
    assert text.count("BEGIN mattermost-transport-encryption") == 1
    assert stat(lab, "gitlab", GITLAB_RB) == ["600 root root"], "gitlab.rb keeps its mode: it holds the DSN"
    r = lab.ssh("gitlab", f"ruby -c {GITLAB_RB}")
    assert r.stdout.strip() == "Syntax OK"


def test_gitlab_rb_evaluates_to_https_and_the_verified_external_database(ctx: Ctx) -> None:
    out = evaluate_gitlab_rb(ctx.lab)
    assert out["url"] == f"https://{GITLAB_MM_HOST}", "the block at the bottom wins over the earlier http:// URL"
    assert out["mattermost_nginx"] == {
        "redirect_http_to_https": True,
        "ssl_certificate": f"{SSL_DIR}/{GITLAB_MM_HOST}.crt",
        "ssl_certificate_key": f"{SSL_DIR}/{GITLAB_MM_HOST}.key",
    }
    mm = out["mattermost"]
    assert mm["team_site_name"] == "Lab chat", "earlier settings still apply"
    assert mm["sql_driver_name"] == "postgres"
    dsn = mm["sql_data_source"]
    # its own role and database (not the nodes'), verified with the CA where it is on the GitLab host
    node_dsn = ctx.outputs["mattermostDsn"]
    assert re.match(r"^postgres://mmuser:[^@]+@10\.251\.0\.21:5432/mattermost\?", node_dsn)
    assert re.match(r"^postgres://gitlab_mmuser:[^@]+@10\.251\.0\.21:5432/gitlab_mattermost\?sslmode=verify-full&", dsn)
    assert f"sslrootcert={GITLAB_CA}" in dsn
    assert dsn.split("@")[0].split(":")[2] != node_dsn.split("@")[0].split(":")[2], "its own password"
    assert out["gitlab_rails"]["smtp_address"] == "smtp.lab.internal"


def test_gitlab_tls_files_are_installed_with_their_modes_and_verify(ctx: Ctx) -> None:
    lab = ctx.lab
    crt, key = f"{SSL_DIR}/{GITLAB_MM_HOST}.crt", f"{SSL_DIR}/{GITLAB_MM_HOST}.key"
    assert stat(lab, "gitlab", crt, key, GITLAB_CA) == ["644 root root", "600 root root", "644 root root"]
    assert lab.ssh("gitlab", f"cat {GITLAB_CA}").stdout == ctx.outputs["caCertPem"]
    r = lab.ssh("gitlab", f"openssl verify -CAfile {GITLAB_CA} -verify_hostname {GITLAB_MM_HOST} {crt}")
    assert r.stdout.strip() == f"{crt}: OK"
    pub = lab.ssh(
        "gitlab", f"openssl x509 -noout -pubkey -in {crt} | sha256sum; openssl pkey -pubout -in {key} | sha256sum"
    ).stdout.splitlines()
    assert pub[0] == pub[1], "the key belongs to the certificate"
    # the stand-in's reconfigure rehashed trusted-certs, as Omnibus does: OpenSSL finds our CA
    # there by its subject hash, as GitLab's Rails would when it calls the bundled Mattermost
    assert_found_by_hash(lab, crt)


def assert_found_by_hash(lab: Lab, crt: str) -> None:
    links = lab.ssh("gitlab", "find /etc/gitlab/trusted-certs -type l -printf '%f -> %l\\n'").stdout.splitlines()
    assert links and all(re.fullmatch(r"[0-9a-f]{8}\.0 -> mattermost-transport-ca\.crt", x) for x in links), links
    r = lab.ssh("gitlab", f"openssl verify -CApath /etc/gitlab/trusted-certs -verify_hostname {GITLAB_MM_HOST} {crt}")
    assert r.stdout.strip() == f"{crt}: OK"


def test_gitlab_ctl_reconfigured_and_restarted_mattermost_once(ctx: Ctx) -> None:
    calls = gitlab_ctl_calls(ctx.lab)
    assert calls.count("reconfigure") == 1 and calls.count("restart mattermost") == 1, calls
    assert calls.index("reconfigure") < calls.index("restart mattermost"), calls
    # the certificate files came first; their activation HUPs the running nginx
    assert calls.index("hup nginx") < calls.index("reconfigure"), calls


def test_dsn_from_gitlab_rb_logs_in_with_verify_full_and_nothing_less(ctx: Ctx) -> None:
    lab = ctx.lab
    r = lab.ssh("gitlab", DSN_FROM_GITLAB_RB + psql_whoami())
    assert r.stdout.strip() in ("true TLSv1.3", "true TLSv1.2"), r.stdout
    # controls: the same login must fail without the stack CA and without TLS
    r = lab.ssh(
        "gitlab",
        DSN_FROM_GITLAB_RB
        + 'dsn=$(printf %s "$dsn" | sed "s|sslrootcert=[^&]*|sslrootcert=/etc/ssl/certs/ca-certificates.crt|")\n'
        + psql_whoami(),
        check=False,
    )
    assert r.returncode != 0 and "certificate verify failed" in r.stdout, r.stdout
    r = lab.ssh(
        "gitlab",
        DSN_FROM_GITLAB_RB + 'dsn=$(printf %s "$dsn" | sed "s|sslmode=verify-full|sslmode=disable|")\n' + psql_whoami(),
        check=False,
    )
    assert r.returncode != 0 and "pg_hba.conf rejects connection" in r.stdout and "no encryption" in r.stdout, r.stdout


def test_gitlab_role_and_database_are_its_own_and_tls_only(ctx: Ctx) -> None:
    """GitLab's Mattermost logs in as its own role to its own database, which the program
    created and gave to that role; the role is refused without TLS by its own reject line."""
    lab = ctx.lab
    owner = lab.ssh(
        "postgres",
        "runuser -u postgres -- psql -X -At -c "
        "\"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'gitlab_mattermost'\"",
    )
    assert owner.stdout.strip() == "gitlab_mmuser"
    r = lab.ssh("gitlab", DSN_FROM_GITLAB_RB + 'psql "$dsn" -Atc "select current_user || \' \' || current_database()" 2>&1')
    assert r.stdout.strip() == "gitlab_mmuser gitlab_mattermost", r.stdout
    hba = lab.ssh("postgres", f"cat {HBA}").stdout
    assert 'hostnossl all "gitlab_mmuser" all reject' in hba.splitlines()
    # the nodes' role is refused without TLS as well; GitLab's switch does not depend on it
    assert 'hostnossl all "mmuser" all reject' in hba.splitlines()


def test_database_admits_the_gitlab_host_through_its_own_hostssl_line(ctx: Ctx) -> None:
    """The seed's subnet-wide `host ... 10.251.0.0/24` line would admit any TLS login; with a
    reject line right after the program's blocks, only their hostssl lines admit anyone: the
    gitlab host still logs in through its own line, the plugin host (no database client) is
    refused, and the nodes' block does not name the gitlab host."""
    lab = ctx.lab
    hba = lab.ssh("postgres", f"cat {HBA}").stdout
    block = hba.split("# BEGIN mattermost-transport-encryption database-pg-hba\n", 1)[1].split("# END", 1)[0]
    assert GITLAB_IP not in block and PLUGIN_IP not in block, block
    own = hba.split("# BEGIN mattermost-transport-encryption database-gitlab-pg-hba\n", 1)[1].split("# END", 1)[0]
    assert f'hostssl "gitlab_mattermost" "gitlab_mmuser" {GITLAB_IP}/32 scram-sha-256' in own.splitlines(), own
    last = max(hba.index(f"# END mattermost-transport-encryption {b}\n") for b in ("database-pg-hba", "database-gitlab-pg-hba"))
    end_marker = hba[last:].split("\n", 1)[0]
    original = lab.ssh("postgres", f"base64 -w0 {HBA}").stdout
    reload = "pg_ctlcluster 15 main reload"
    lab.ssh(
        "postgres",
        f"sed -i '/^{end_marker}$/a hostssl all all all reject  # test_gitlab_teleport' "
        f"{HBA} && {reload}",
    )
    try:
        r = lab.ssh("gitlab", DSN_FROM_GITLAB_RB + psql_whoami())
        assert r.stdout.strip().startswith("true TLS"), r.stdout
        plugin_dsn = ctx.outputs["mattermostDsn"].replace("/etc/mattermost-tls/ca.crt", PLUGIN_CA)
        r = lab.ssh("plugin", "IFS= read -r dsn\n" + psql_whoami(), input=plugin_dsn + "\n", check=False)
        assert r.returncode != 0, r.stdout
        assert f'pg_hba.conf rejects connection for host "{PLUGIN_IP}"' in r.stdout, r.stdout
    finally:
        lab.ssh("postgres", f"printf %s {original} | base64 -d > {HBA} && {reload}")
    assert lab.ssh("postgres", f"base64 -w0 {HBA}").stdout == original


def test_plugin_toml_parses_back_and_only_root_reads_it(ctx: Ctx) -> None:
    lab = ctx.lab
    r = lab.ssh(
        "plugin",
        f"python3 -c 'import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], \"rb\"))))' {PLUGIN_TOML}",
    )
    assert json.loads(r.stdout) == {
        "teleport": {
            "addr": "teleport.lab.internal:3025",
            "identity": "/var/lib/teleport/plugins/mattermost/auth_id",
            "refresh_identity": True,
        },
        "mattermost": {
            "url": f"https://{SERVER_NAME}",
            "token": TOKEN,
            "recipients": ["town-square/access-requests", "oncall@lab.internal"],
        },
        "log": {"output": "stderr", "severity": "INFO"},
    }
    assert stat(lab, "plugin", PLUGIN_TOML, PLUGIN_UNIT, PLUGIN_CA) == [
        "600 root root",
        "644 root root",
        "644 root root",
    ]
    assert lab.ssh("plugin", f"cat {PLUGIN_CA}").stdout == ctx.outputs["caCertPem"]
    # an unprivileged user cannot read the token
    r = lab.ssh("plugin", f"runuser -u nobody -- cat {PLUGIN_TOML}", check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_plugin_unit_verifies_and_runs_the_plugin_with_its_trust_setting(ctx: Ctx) -> None:
    lab = ctx.lab
    state = lab.ssh(
        "plugin", "systemctl is-enabled teleport-mattermost; systemctl is-active teleport-mattermost", check=False
    )
    assert state.stdout.split() == ["enabled", "inactive"], "enabled, not started: the binary is absent"
    # systemd-analyze verify checks that ExecStart exists: without the binary it must complain
    r = lab.ssh("plugin", f"systemd-analyze verify {PLUGIN_UNIT} 2>&1", check=False)
    assert r.returncode != 0 and PLUGIN_BINARY in r.stdout, r.stdout
    # a clearly named stand-in for the plugin: records its arguments and environment, then idles
    standin = (
        "#!/bin/sh\n# STAND-IN for the Teleport Mattermost plugin (tests/lab/test_gitlab_teleport.py)\n"
        'printf "%s\\n" "$*" "SSL_CERT_DIR=$SSL_CERT_DIR" > /run/teleport-mattermost-standin.out\nexec sleep 600\n'
    )
    lab.ssh("plugin", f"cat > {PLUGIN_BINARY} && chmod 0755 {PLUGIN_BINARY}", input=standin)
    try:
        r = lab.ssh("plugin", f"systemd-analyze verify {PLUGIN_UNIT} 2>&1", check=False)
        assert r.returncode == 0 and r.stdout.strip() == "", r.stdout
        lab.ssh("plugin", "systemctl start teleport-mattermost")
        out = lab.ssh(
            "plugin",
            "for i in $(seq 50); do [ -s /run/teleport-mattermost-standin.out ] && break; sleep 0.1; done; "
            "cat /run/teleport-mattermost-standin.out",
        ).stdout.splitlines()
        assert out == [
            f"start --config={PLUGIN_TOML} --pid-file=/var/run/teleport-mattermost.pid",
            "SSL_CERT_DIR=/etc/teleport-mattermost/ca:/etc/ssl/certs",
        ]
    finally:
        lab.ssh(
            "plugin",
            f"systemctl stop teleport-mattermost; rm -f {PLUGIN_BINARY} /run/teleport-mattermost-standin.out",
        )


def test_plugin_host_reaches_mattermost_over_verified_https_with_the_installed_ca(ctx: Ctx) -> None:
    lab = ctx.lab
    url = f"https://{SERVER_NAME}/api/v4/system/ping"
    resolve = f"--resolve {SERVER_NAME}:443:{PROXY_IP}"
    r = lab.ssh("plugin", f"curl -sS --max-time 10 --cacert {PLUGIN_CA} {resolve} {url}")
    assert json.loads(r.stdout)["status"] == "OK"
    # control: the host's public roots alone do not trust the stack's certificate
    r = lab.ssh("plugin", f"curl -sS --max-time 10 {resolve} {url}", check=False)
    assert r.returncode == 60 and "certificate" in r.stderr, r.stderr


def test_rotating_the_ca_reaches_both_hosts_and_omnibus_finds_the_new_one(ctx: Ctx) -> None:
    """A new CA (new subject): the GitLab host's files and the plugin's CA are updated; the
    gitlab.rb block (same DSN) stays, so Mattermost is not restarted, but Omnibus reconfigures
    once so that its trust store finds the new CA by its new subject hash."""
    lab = ctx.lab
    calls = gitlab_ctl_calls(lab)
    ctx.config["ca"] = {"commonName": "Mattermost lab transport CA 2", "organization": "Lab"}
    ev = run_up(ctx)
    ch = changed(ev)
    assert ch.get("gitlab-gitlab-tls-files") == "update" and ch.get("plugin-teleport-mattermost-files") == "update", ch
    assert "gitlab-gitlab-rb" not in ch and "plugin-teleport-mattermost-enable" not in ch, ch
    new_ca = ev.outputs["caCertPem"]
    assert new_ca != ctx.outputs["caCertPem"]
    ctx.outputs = ev.outputs
    assert gitlab_ctl_calls(lab)[len(calls) :] == ["status nginx", "hup nginx", "reconfigure"]
    assert lab.ssh("gitlab", f"cat {GITLAB_CA}").stdout == new_ca
    assert_found_by_hash(lab, f"{SSL_DIR}/{GITLAB_MM_HOST}.crt")
    # the database now presents a certificate of the new CA; gitlab's DSN still verifies it
    r = lab.ssh("gitlab", DSN_FROM_GITLAB_RB + psql_whoami())
    assert r.stdout.strip().startswith("true TLS"), r.stdout
    assert lab.ssh("plugin", f"cat {PLUGIN_CA}").stdout == new_ca
    r = lab.ssh(
        "plugin",
        f"curl -sS --max-time 10 --cacert {PLUGIN_CA} --resolve {SERVER_NAME}:443:{PROXY_IP} "
        f"https://{SERVER_NAME}/api/v4/system/ping",
    )
    assert json.loads(r.stdout)["status"] == "OK"


def test_up_again_changes_nothing(ctx: Ctx) -> None:
    calls = gitlab_ctl_calls(ctx.lab)
    ev = run_up(ctx)
    assert changed(ev) == {}, changed(ev)
    assert ev.ssh_sessions == 0
    assert gitlab_ctl_calls(ctx.lab) == calls, "no reconfigure without a change"


def test_the_audit_checks_gitlab_and_teleport(ctx: Ctx) -> None:
    """tools/audit.py's GitLab and Teleport rows pass on the applied hosts and fail on what they
    look for: a plugin config others can read, a GitLab CA file that no longer verifies the
    database (each put back after)."""
    cfg = audit_tool.load_stack("lab", ctx.config)
    put_ca, ca_tmp = audit_tool.ca_upload(str(audit_tool.stack_outputs("lab", str(ctx.state))["caCertPem"]))

    def rows() -> dict[str, bool]:
        with audit_tool.private_dir() as d:
            hosts = audit_tool.Hosts(cfg, d)
            checks = audit_tool.gitlab_checks(cfg, hosts, put_ca, ca_tmp) + audit_tool.teleport_checks(cfg, hosts)
        print(audit_tool.render(checks))
        return {f"{c.hop}: {c.check}": c.ok for c in checks}

    ok = rows()
    assert len(ok) == 5 and all(ok.values()), ok
    ctx.lab.ssh("plugin", f"chmod 0644 {PLUGIN_TOML}")
    try:
        assert [k for k, v in rows().items() if not v] == [f"plugin -> mattermost: {PLUGIN_TOML} root's alone, no insecure"]
    finally:
        ctx.lab.ssh("plugin", f"chmod 0600 {PLUGIN_TOML}")
    ctx.lab.ssh("gitlab", f"cp -p {GITLAB_CA} /root/ca.keep && cp /etc/ssl/certs/ca-certificates.crt {GITLAB_CA}")
    try:
        failed = [k for k, v in rows().items() if not v]
        assert failed == [f"gitlab -> database: TLS verified as {cfg.database.server_name or cfg.database.address} with {GITLAB_CA}"]
    finally:
        ctx.lab.ssh("gitlab", f"cp -p /root/ca.keep {GITLAB_CA} && rm -f /root/ca.keep")
    assert all(rows().values())


def test_destroy_puts_every_host_back_byte_for_byte(ctx: Ctx) -> None:
    lab = ctx.lab
    before_calls = len(gitlab_ctl_calls(lab))
    ev = replay.destroy(ROOT, "lab", state_path=ctx.state)
    assert ev.ok, [f"{s.name}: {s.error[-1500:]}" for s in ev.failed_steps]
    assert json.loads(ctx.state.read_text()).get("resources", []) == []
    for host, before in ctx.before.items():
        assert diff(before, snapshot(lab, host)) == [], host
    # GitLab's role and the database the program created for it are gone from the server
    r = lab.ssh(
        "postgres",
        "runuser -u postgres -- psql -X -At -c \"SELECT count(*) FROM pg_roles WHERE rolname = 'gitlab_mmuser'\" "
        "-c \"SELECT count(*) FROM pg_database WHERE datname = 'gitlab_mattermost'\"",
    )
    assert r.stdout.split() == ["0", "0"], r.stdout
    assert lab.ssh("gitlab", f"cat {GITLAB_RB}").stdout == SEED_GITLAB_RB
    assert "reconfigure" in gitlab_ctl_calls(lab)[before_calls:], "Omnibus applies the original gitlab.rb again"
    r = lab.ssh("plugin", "systemctl is-enabled teleport-mattermost 2>&1", check=False)
    assert r.returncode != 0

"""Audit a live stack hop by hop, from the hosts themselves (the lab by default).

    python -m tools.audit [--stack lab] [--json] [--browser-ca PEM_FILE] [--capture IFACE]

For every hop it checks that the peer presents a certificate chained to the stack CA with the
expected name, that plaintext is refused, that cluster tunnels and DNAT rules are in place, and
how many days each certificate has left. It prints a table and exits non-zero on any failure.

Config comes from stacks/Pulumi.<stack>.yaml (plus the lab inventory or, for secrets, the
environment variable MMTLS_SSH_PRIVATE_KEY_FILE); the CA comes from the stack's outputs (the replay
engine's state, or `pulumi stack output` where the CLI is installed). SSH pins each host's key.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from components import cluster_render
from components.config import PROJECT, StackConfig, parse
from components.teleport import CA_FILE_NAME

ROOT = Path(__file__).resolve().parent.parent
WARN_DAYS = 14


@dataclass
class Check:
    hop: str
    check: str
    ok: bool
    detail: str


def load_stack(stack: str, overrides: dict[str, object] | None = None) -> StackConfig:
    """The stack file's config; `overrides` replace whole top-level keys (as the replay's
    `config=` does, like `pulumi config set`)."""
    data = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()) or {}
    raw = {k.split(":", 1)[1]: v for k, v in (data.get("config") or {}).items() if k.startswith(PROJECT + ":")}
    raw.update(overrides or {})
    key_file = os.environ.get("MMTLS_SSH_PRIVATE_KEY_FILE")
    if key_file:
        raw["sshPrivateKey"] = Path(key_file).read_text()
    return parse(raw, base_dir=ROOT)


def stack_outputs(stack: str, state: str | None = None) -> dict[str, object]:
    """The stack's outputs with secrets, from the replay engine or the Pulumi CLI."""
    replay = [sys.executable, "-m", "lab.replay", "outputs", "--stack", stack, "--json", "--show-secrets"]
    cmds = [replay + (["--state", state] if state else [])]
    if shutil.which("pulumi") and not state:
        cmds.insert(0, ["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack])
    errors = []
    for cmd in cmds:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            return json.loads(r.stdout)
        errors.append(f"{cmd[0]} {' '.join(cmd[1:3])}: {r.stderr.strip()[-300:]}")
    raise SystemExit("cannot read the stack's outputs (was it applied?):\n  " + "\n  ".join(errors))


class Hosts:
    """Runs commands on the stack's hosts over SSH with pinned host keys."""

    def __init__(self, cfg: StackConfig, workdir: Path):
        self.cfg = cfg
        self.key = workdir / "id"
        self.key.write_text(cfg.ssh_private_key.get_secret_value().strip() + "\n")
        self.key.chmod(0o600)
        self.known = workdir / "known_hosts"
        lines = []
        for addr, ssh in self.targets():
            lines.append(f"{ssh.address or addr} {ssh.host_key}")
        self.known.write_text("\n".join(lines) + "\n")

    def targets(self):
        c = self.cfg
        yield from ((n.address, n.ssh) for n in c.nodes)
        yield c.proxy.address, c.proxy.ssh
        yield c.database.address, c.database.ssh
        if c.gitlab.enabled:
            yield c.gitlab.address, c.gitlab.ssh
        if c.teleport.enabled:
            yield c.teleport.address, c.teleport.ssh

    def run(
        self, address: str | None, ssh, script: str, timeout: int = 30, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        host = ssh.address or address
        assert host is not None  # StackConfig validation requires every host's address
        cmd = [
            "ssh", "-i", str(self.key), "-o", f"UserKnownHostsFile={self.known}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", str(ssh.port or self.cfg.ssh.port),
            f"{ssh.user or self.cfg.ssh.user}@{host}", "sh -c " + shlex.quote(script),
        ]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input or "")
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(cmd, 124, "", "timed out")


def _verify_flag(name: str) -> str:
    """openssl's option that checks `name` against the certificate: an address or a host name."""
    return "-verify_ip" if name.replace(".", "").isdigit() or ":" in name else "-verify_hostname"


def _tls_probe(target: str, name: str, ca_path: str, starttls: str | None = None, ca_dir: str | None = None) -> str:
    """Shell that connects with openssl, verifies chain + name, prints the peer's notAfter.
    `ca_dir`: also trust that hashed directory (e.g. the host's /etc/ssl/certs)."""
    st = f"-starttls {shlex.quote(starttls)} " if starttls else ""
    flag = _verify_flag(name)
    capath = f"-CApath {shlex.quote(ca_dir)} " if ca_dir else ""
    return (
        f"out=$(echo | timeout 10 openssl s_client {st}-connect {shlex.quote(target)} -servername {shlex.quote(name)} "
        f"-CAfile {shlex.quote(ca_path)} {capath}{flag} {shlex.quote(name)} -verify_return_error 2>&1 || true)\n"
        # judge the verification, not s_client's exit code: servers that close without a TLS
        # close_notify make it exit 1 after a perfectly verified handshake
        "echo \"$out\" | grep -q 'Verify return code: 0 (ok)' || "
        "{ echo \"$out\" | grep -E 'verify|error|refused' | head -3; exit 1; }\n"
        "echo \"$out\" | openssl x509 -noout -enddate"
    )


def _days_left(enddate_line: str) -> int | None:
    try:
        when = dt.datetime.strptime(enddate_line.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
    except (IndexError, ValueError):
        return None
    return (when - dt.datetime.utcnow()).days


def ca_upload(ca_pem: str) -> tuple[str, str]:
    """(shell that writes the stack's CA bundle on a host, the path it writes)."""
    ca_tmp = "/tmp/.mmtls-audit-ca.pem"
    return f"umask 022; printf '%s' {shlex.quote(ca_pem)} > {ca_tmp}\n", ca_tmp


def audit(cfg: StackConfig, outputs: dict[str, object], hosts: Hosts, browser_ca: str | None = None) -> list[Check]:
    """Every hop's checks; `browser_ca`: the PEM bundle browsers trust (default: the proxy host's
    system store) for a public certificate the stack did not issue (proxy.tls.source 'keep')."""
    checks: list[Check] = []
    ca_pem = str(outputs["caCertPem"])
    # during a CA rotation caCertPem is the trust bundle, old CA first (components/pki.py)
    cas = x509.load_pem_x509_certificates(ca_pem.encode())
    checks += ca_expiry_checks(cas, dt.datetime.now(dt.UTC))
    put_ca, ca_tmp = ca_upload(ca_pem)
    port = cfg.mattermost.port
    upstream = cfg.mattermost.upstream_name
    proxy = cfg.proxy

    # proxy -> node, probed from the proxy itself
    for n in cfg.nodes:
        hop = f"proxy -> {n.name}"
        r = hosts.run(proxy.address, proxy.ssh, put_ca + _tls_probe(f"{n.address}:{port}", upstream, ca_tmp))
        days = _days_left(r.stdout.splitlines()[-1]) if r.returncode == 0 and r.stdout else None
        checks.append(Check(hop, f"TLS verified as {upstream}", r.returncode == 0, (r.stdout + r.stderr).strip()[-160:]))
        if days is not None:
            checks.append(Check(hop, "node cert days to expiry", days > WARN_DAYS, f"{days} days"))
        r = hosts.run(
            proxy.address, proxy.ssh,
            f"code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 http://{n.address}:{port}/api/v4/system/ping || true); "
            "echo \"$code\"; [ \"$code\" != 200 ]",
        )
        checks.append(Check(hop, "plain HTTP refused", r.returncode == 0, f"http status {r.stdout.strip() or 'none'}"))

    site = proxy.site_file
    r = hosts.run(proxy.address, proxy.ssh, f"nginx -T 2>/dev/null | grep -c 'proxy_ssl_verify *on' ; grep -q 'proxy_pass https://' {shlex.quote(site)}")
    checks.append(Check("browser -> proxy", "NGINX verifies upstream certs", r.returncode == 0 and r.stdout.strip() not in ("", "0"), f"{r.stdout.strip()} proxy_ssl_verify on"))
    checks += browser_hop_checks(cfg, cas, hosts, browser_ca)

    # node -> database, probed from each node
    db = cfg.database
    assert db.address is not None  # StackConfig validation requires it
    name = db.server_name or db.address
    starttls = "mysql" if db.engine == "mysql" else "postgres"
    for n in cfg.nodes:
        hop = f"{n.name} -> database"
        r = hosts.run(n.address, n.ssh, put_ca + _tls_probe(f"{db.address}:{db.effective_port}", name, ca_tmp, starttls))
        checks.append(Check(hop, f"TLS verified as {name}", r.returncode == 0, (r.stdout + r.stderr).strip()[-160:]))
        days = _days_left(r.stdout.splitlines()[-1]) if r.returncode == 0 and r.stdout else None
        if days is not None and n is cfg.nodes[0]:
            checks.append(Check("database", "server cert days to expiry", days > WARN_DAYS, f"{days} days"))
    secret_input = None
    if db.engine == "mysql":
        # MySQL/MariaDB check the password before require_secure_transport: prove the refusal with
        # the real one, handed over on stdin as a client option file (never in argv or the command)
        m = re.match(r"^([^:]+):(.*)@tcp\(", str(outputs.get("mattermostDsn", "")))
        secret_input = f"[client]\npassword={m.group(2) if m else 'unknown'}\n"
        # with REQUIRE SSL the refusal reads "Access denied"; the same password succeeding over
        # verified TLS shows the transport, not the password, was refused. The DSN's user: after
        # database.rotatePassword the nodes log in as the rotation's login, not database.user
        login = m.group(1) if m else db.user
        target = f"-h {shlex.quote(db.address)} -P {db.effective_port} -u {shlex.quote(login)}"
        probe = (
            "opts=$(mktemp); trap 'rm -f \"$opts\"' EXIT; cat > \"$opts\"\n"
            + put_ca
            + f"out=$(mysql --defaults-extra-file=\"$opts\" --skip-ssl {target} -e 'select 1' 2>&1 || true); echo \"$out\"\n"
            "echo \"$out\" | grep -Eq 'insecure transport|Access denied' || exit 1\n"
            f"mysql --defaults-extra-file=\"$opts\" --ssl --ssl-ca={ca_tmp} --ssl-verify-server-cert {target} -e 'select 1' >/dev/null"
            " || { echo 'and the same login over verified TLS failed too'; exit 1; }"
        )
    else:
        probe = _psql_plain_refused(db.address, db.effective_port, db.name, db.user)
    r = hosts.run(db.address, db.ssh, probe, input=secret_input)
    checks.append(Check("nodes -> database", f"plaintext login of {db.user} refused", r.returncode == 0, r.stdout.strip()[-160:]))

    if cfg.cluster.enabled:
        ports = [cfg.cluster.gossip_port] + ([cfg.cluster.streaming_port] if cfg.cluster.streaming_port else [])
        for n in cfg.nodes:
            peers = [p for p in cfg.nodes if p.name != n.name]
            # the cluster's DNAT lives in its own chain, jumped to from nat OUTPUT
            script = (
                "rules=$(iptables -t nat -S)\n"
                "echo \"$rules\" | grep -q -- '-A OUTPUT -j MMTLS-CLUSTER-NAT' || { echo 'no jump to MMTLS-CLUSTER-NAT'; exit 1; }\n"
            ) + "".join(
                f"echo \"$rules\" | grep -q -- '-A MMTLS-CLUSTER-NAT -d {p.address}/32 .*--dport {port} .*DNAT' || {{ echo 'no DNAT for {p.name}:{port}'; exit 1; }}\n"
                for p in peers for port in ports
            )
            r = hosts.run(n.address, n.ssh, script)
            checks.append(Check(f"{n.name} -> peers", "DNAT rules to tunnels", r.returncode == 0, r.stdout.strip()[-120:] or f"{len(peers) * len(ports)} rules"))
            units = " ".join(cluster_render.tunnel_unit_name(p.name) for p in peers)
            r = hosts.run(n.address, n.ssh, f"systemctl is-active {units} | grep -cx active")
            active = int(r.stdout.strip() or 0)
            checks.append(Check(f"{n.name} -> peers", "tunnels active", active >= len(peers), f"{active}/{len(peers)}"))
            # what the node's drift check (mm-cluster-heal.timer) would put back: chains that no
            # longer match the installed rules, missing jumps, tunnels that are not running
            r = hosts.run(n.address, n.ssh, f"{cluster_render.HELPER} drift")
            checks.append(
                Check(f"{n.name} -> peers", "no drift from the installed files", r.returncode == 0,
                      (r.stdout + r.stderr).strip().replace("\n", "; ")[-200:] or "DNAT, filter and tunnels as installed")
            )
    checks += gossip_setting_checks(cfg, hosts)
    checks += gossip_wire_checks(cfg, hosts)
    checks += gitlab_checks(cfg, hosts, put_ca, ca_tmp)
    checks += teleport_checks(cfg, hosts)
    return checks


# ---------------------------------------------------------------- GitLab and Teleport


def _psql_plain_refused(address: str, port: int, dbname: str, user: str) -> str:
    """Shell: a plaintext login of `user` (a wrong password: the refusal comes first) must be
    refused by the server's TLS rule. psql from PATH, else Omnibus' embedded one."""
    conninfo = f"host={address} port={port} dbname={dbname} user={user} sslmode=disable"
    return (
        "psql=$(command -v psql || echo /opt/gitlab/embedded/bin/psql)\n"
        f"out=$(PGPASSWORD=wrong-password PGCONNECT_TIMEOUT=5 \"$psql\" {shlex.quote(conninfo)} -c 'select 1' 2>&1 || true)\n"
        'echo "$out"; echo "$out" | grep -Eq \'no encryption|rejects connection\''
    )


def gitlab_checks(cfg: StackConfig, hosts: Hosts, put_ca: str, ca_tmp: str) -> list[Check]:
    """GitLab's bundled Mattermost (gitlab.enabled), probed on the GitLab host: its certificate
    chains to the stack CA (or, provided, to the host's public roots) and names the Mattermost
    host; the CA file the DSN verifies with verifies the database server; GitLab's own role is
    refused without TLS. (No live probe of its HTTPS: Omnibus' NGINX serves the certificate
    checked here once `gitlab-ctl reconfigure` ran, which the program runs.)"""
    gl = cfg.gitlab
    if not gl.enabled or gl.address is None:
        return []
    host = gl.mattermost_host
    cert = f"{gl.ssl_dir}/{host}.crt"
    trust = f"-CAfile {ca_tmp}" if gl.tls_source == "ca" else "-CApath /etc/ssl/certs"
    r = hosts.run(gl.address, gl.ssh, put_ca + f"openssl verify {trust} {_verify_flag(host)} {shlex.quote(host)} {shlex.quote(cert)} 2>&1")
    source = "the stack CA" if gl.tls_source == "ca" else "the host's public roots"
    checks = [Check("browser -> gitlab mattermost", f"{cert} from {source} for {host}", r.returncode == 0, r.stdout.strip()[-160:])]
    if gl.external_postgres:
        db = cfg.database
        assert db.address is not None  # StackConfig validation requires it
        name = db.server_name or db.address
        r = hosts.run(gl.address, gl.ssh, _tls_probe(f"{db.address}:{db.effective_port}", name, gl.ca_file, "postgres"))
        checks.append(Check("gitlab -> database", f"TLS verified as {name} with {gl.ca_file}", r.returncode == 0, (r.stdout + r.stderr).strip()[-160:]))
        r = hosts.run(gl.address, gl.ssh, _psql_plain_refused(db.address, db.effective_port, gl.database_name, gl.database_user))
        checks.append(Check("gitlab -> database", f"plaintext login of {gl.database_user} refused", r.returncode == 0, r.stdout.strip()[-160:]))
    return checks


def teleport_checks(cfg: StackConfig, hosts: Hosts) -> list[Check]:
    """The Teleport plugin host (teleport.enabled): the Mattermost URL it posts to answers over
    TLS that verifies with the plugin's trust (its CA directory, then the host's public roots,
    as the unit's SSL_CERT_DIR says); its config, which holds the bot token, is root's alone."""
    tp = cfg.teleport
    if not tp.enabled or tp.address is None:
        return []
    url = urlsplit(tp.effective_mattermost_url(cfg.proxy.server_name))
    name, port = url.hostname or "", url.port or 443
    # the default URL is the proxy's server name: connect where it must resolve to
    target = f"{cfg.proxy.address}:{port}" if name == cfg.proxy.server_name and cfg.proxy.address else f"{name}:{port}"
    r = hosts.run(tp.address, tp.ssh, _tls_probe(target, name, f"{tp.ca_dir}/{CA_FILE_NAME}", ca_dir="/etc/ssl/certs"))
    checks = [Check("plugin -> mattermost", f"TLS verified as {name} with the plugin's trust", r.returncode == 0, (r.stdout + r.stderr).strip()[-160:])]
    config = shlex.quote(tp.config_file)
    r = hosts.run(
        tp.address, tp.ssh,
        f"m=$(stat -c '%a %U:%G' {config}); echo \"$m\"; [ \"$m\" = '600 root:root' ] || exit 1\n"
        f"! grep -Eiq '^[[:space:]]*insecure[[:space:]]*=[[:space:]]*true' {config} || {{ echo 'insecure = true'; exit 1; }}",
    )
    checks.append(Check("plugin -> mattermost", f"{tp.config_file} root's alone, no insecure", r.returncode == 0, r.stdout.strip()[-120:]))
    return checks


# ---------------------------------------------------------------- browser -> proxy

PUBLIC_TRUST = "browsers' trust"


def ca_expiry_checks(cas: list[x509.Certificate], now: dt.datetime) -> list[Check]:
    """One row per CA of the stack's trust bundle (two during a rotation, each named then)."""
    rows = []
    for ca in cas:
        days = (ca.not_valid_after_utc - now).days
        which = f" ({ca.subject.rfc4514_string()})" if len(cas) > 1 else ""
        rows.append(Check("pki", f"CA days to expiry{which}", days > WARN_DAYS, f"{days} days"))
    return rows


def _issued_by_any(leaf: x509.Certificate, cas: list[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            leaf.verify_directly_issued_by(ca)
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


def judge_browser_cert(
    source: str | None, served: list[x509.Certificate], stack_cas: list[x509.Certificate], provided: x509.Certificate | None
) -> tuple[Check, str]:
    """What NGINX serves browsers against what proxy.tls.source says, and which trust verifies it:
    'stack CA' when the stack CA issued the leaf, else PUBLIC_TRUST (the admin's public
    certificate, e.g. Let's Encrypt, which 'keep' leaves in place and a browser verifies with its
    own store). Unset source: the program chose 'keep' for a site that already served HTTPS and
    'ca' otherwise (components/nginx_live.py), so either is right."""
    check = "certificate browsers are served"
    if not served:
        return Check("browser -> proxy", check, False, "NGINX served no certificate on port 443"), PUBLIC_TRUST
    leaf = served[0]
    subject = leaf.subject.rfc4514_string()
    by_stack = _issued_by_any(leaf, stack_cas)  # either CA of a rotation's bundle
    trust = "stack CA" if by_stack else PUBLIC_TRUST
    detail = f"{subject}, issued by {leaf.issuer.rfc4514_string()} ({'the stack CA' if by_stack else 'not the stack CA'})"
    if source == "ca" and not by_stack:
        return Check("browser -> proxy", check, False, f"proxy.tls.source is 'ca' but NGINX serves {detail}"), trust
    if source == "provided" and provided is not None and leaf != provided:
        return Check("browser -> proxy", check, False, f"not proxy.tls.cert: NGINX serves {detail}"), trust
    return Check("browser -> proxy", check, True, f"{source or 'unset'}: {detail}"), trust


def browser_hop_checks(cfg: StackConfig, stack_cas: list[x509.Certificate], hosts: Hosts, browser_ca: str | None) -> list[Check]:
    """The certificate NGINX really serves, then a ping through it verified with the trust that
    certificate needs (the stack CA, or the browsers' store / `browser_ca`)."""
    proxy = cfg.proxy
    name = shlex.quote(proxy.server_name)
    r = hosts.run(
        proxy.address, proxy.ssh,
        f"echo | timeout 10 openssl s_client -connect 127.0.0.1:443 -servername {name} -showcerts 2>/dev/null || true",
    )
    try:
        served = x509.load_pem_x509_certificates(r.stdout.encode()) if "BEGIN CERTIFICATE" in r.stdout else []
    except ValueError:
        served = []
    provided = x509.load_pem_x509_certificate(proxy.tls.cert.encode()) if proxy.tls.cert else None
    row, trust = judge_browser_cert(proxy.tls.source, served, stack_cas, provided)
    if trust == "stack CA":
        bundle: str | None = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in stack_cas)
        using = "the stack CA"
    else:
        bundle = browser_ca
        using = "--browser-ca" if browser_ca else "the proxy host's system trust store"
    cacert = '--cacert "$ca" ' if bundle else ""
    r = hosts.run(
        proxy.address, proxy.ssh,
        "ca=$(mktemp); trap 'rm -f \"$ca\"' EXIT; cat > \"$ca\"\n"
        f"curl -sS --max-time 10 {cacert}--resolve {name}:443:127.0.0.1 https://{name}/api/v4/system/ping",
        input=bundle or "",
    )
    ok = r.returncode == 0 and '"OK"' in r.stdout.replace(" ", "")
    return [
        row,
        Check("browser -> proxy", "ping through NGINX over HTTPS", ok, f"verified with {using}: " + (r.stdout + r.stderr).strip()[-100:]),
    ]


# ---------------------------------------------------------------- gossip-encryption setting per node

GOSSIP_PROBE = r"""
v=$(timeout 60 "$bin" version 2>/dev/null | sed -n 's/^Version:[[:space:]]*\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n 1) || v=""
echo "version=$v"
pid=$(systemctl show -p MainPID --value "$unit.service" 2>/dev/null || echo 0)
echo "pid=$pid"
if [ "$pid" != 0 ] && [ -r "/proc/$pid/environ" ]; then
  tr '\0' '\n' < "/proc/$pid/environ" | grep -E '^MM_CLUSTERSETTINGS_ENABLE(EXPERIMENTAL)?GOSSIPENCRYPTION=' | sed 's/^/env:/' || true
fi
if [ -r "$config" ] && command -v python3 >/dev/null 2>&1; then
  python3 -c 'import json,sys; c=(json.load(open(sys.argv[1])).get("ClusterSettings") or {}); [print("file:%s=%s" % (k, str(c[k]).lower())) for k in ("EnableGossipEncryption", "EnableExperimentalGossipEncryption") if k in c]' "$config" 2>/dev/null || true
fi
"""


def judge_gossip_setting(node: str, probe_output: str) -> Check:
    """Does the RUNNING process of `node` have gossip encryption on under the name ITS version
    reads? Mattermost ignores an MM_* name its version lacks (server/config/environment.go
    applyEnvKey), so the other name set to true protects nothing. Env wins over config.json."""
    from components.cluster_render import gossip_encryption_var  # pure; the audit needs no Pulumi

    lines = probe_output.splitlines()
    version = next((ln.split("=", 1)[1] for ln in lines if ln.startswith("version=")), "")
    pid = next((ln.split("=", 1)[1] for ln in lines if ln.startswith("pid=")), "0")
    env = dict(ln[4:].split("=", 1) for ln in lines if ln.startswith("env:") and "=" in ln)
    file = dict(ln[5:].split("=", 1) for ln in lines if ln.startswith("file:") and "=" in ln)
    check = "gossip encryption setting of the running version"
    hop = f"{node} <-> peers"
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        return Check(hop, check, False, "installed version unknown (`mattermost version` printed no Version: X.Y.Z)")
    if pid in ("", "0"):
        return Check(hop, check, False, f"Mattermost {version} is not running")
    var = gossip_encryption_var(tuple(int(x) for x in version.split(".")))  # type: ignore[arg-type]
    setting = var.removeprefix("MM_CLUSTERSETTINGS_")
    name = {"ENABLEGOSSIPENCRYPTION": "EnableGossipEncryption"}.get(setting, "EnableExperimentalGossipEncryption")
    if var in env:
        on = env[var].strip() in ("1", "t", "T", "TRUE", "true", "True")  # strconv.ParseBool
        return Check(hop, check, on, f"{version}: {var}={env[var]} in the process environment")
    if file.get(name) == "true":
        return Check(hop, check, True, f"{version}: ClusterSettings.{name} true in config.json")
    others = sorted(set(env) - {var})
    hint = f"; {', '.join(others)} is set but {version} ignores it" if others else ""
    return Check(hop, check, False, f"{version} needs {var} (ClusterSettings.{name}): not set{hint}")


def gossip_setting_checks(cfg: StackConfig, hosts: Hosts) -> list[Check]:
    """One row per node when the stack encrypts gossip: the running process has the setting
    its installed version needs (read from /proc/<MainPID>/environ, else config.json)."""
    if not (cfg.cluster.enabled and cfg.cluster.gossip_encryption):
        return []
    checks = []
    for n in cfg.nodes:
        install_dir = cfg.node_setting(n, "install_dir").rstrip("/")
        params = (
            f"unit={shlex.quote(cfg.node_setting(n, 'unit'))}\n"
            f"bin={shlex.quote(install_dir + '/bin/mattermost')}\n"
            f"config={shlex.quote(install_dir + '/config/config.json')}\n"
        )
        r = hosts.run(n.address, n.ssh, params + GOSSIP_PROBE, timeout=90)
        checks.append(judge_gossip_setting(n.name, r.stdout))
    return checks


# ---------------------------------------------------------------- UDP gossip on the wire, per node

# Field names of memberlist's UDP messages, msgpack-encoded by name (hashicorp/memberlist net.go:
# `ping`, `indirectPingReq`, `ackResp`, `alive`, `suspect`, `dead`): in a sealed packet
# (security.go `encryptPayload`: version byte, 12-byte nonce, AES-GCM) none of them is readable.
MEMBERLIST_FIELDS = (b"SeqNo", b"SourceAddr", b"SourceNode", b"Incarnation", b"Payload")
PRINTABLE_RUN = 24
"""A run this long of printable ASCII is text (the stand-in's plain frames are JSON); in random
bytes it occurs with a probability of about (95/256)^24 = 4e-11 per position."""

GOSSIP_CAPTURE = r"""
command -v tcpdump >/dev/null 2>&1 || { echo "tcpdump is not installed on this node"; exit 3; }
f=$(mktemp); trap 'rm -f "$f"' EXIT
timeout "$seconds" tcpdump -i any -y LINUX_SLL -nn -U -c "$count" -w "$f" "udp port $port" >/dev/null 2>&1 || true
echo "pcap=$(base64 < "$f" | tr -d '
')"
"""


def udp_payloads(pcap: bytes, port: int) -> list[bytes]:
    """Payloads of the IPv4/UDP datagrams to or from `port` in a pcap (Ethernet, Linux cooked v1/v2)."""
    import struct

    if len(pcap) < 24:
        return []
    endian = "<" if pcap[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", pcap[20:24])[0]
    out, off = [], 24
    while off + 16 <= len(pcap):
        incl = struct.unpack(endian + "I", pcap[off + 8 : off + 12])[0]
        pkt, off = pcap[off + 16 : off + 16 + incl], off + 16 + incl
        if linktype == 1 and len(pkt) >= 14 and pkt[12:14] == b"\x08\x00":
            ip = pkt[14:]
        elif linktype == 113 and len(pkt) >= 16 and pkt[14:16] == b"\x08\x00":
            ip = pkt[16:]
        elif linktype == 276 and len(pkt) >= 20 and pkt[0:2] == b"\x08\x00":
            ip = pkt[20:]
        else:
            continue
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        udp = ip[(ip[0] & 0x0F) * 4 :]
        if len(udp) < 8 or port not in struct.unpack(">HH", udp[:4]):
            continue
        out.append(bytes(udp[8 : struct.unpack(">H", udp[4:6])[0]]))
    return out


def looks_plain(datagram: bytes) -> bool:
    if any(f in datagram for f in MEMBERLIST_FIELDS):
        return True
    return re.search(rb"[\x20-\x7e]{%d}" % PRINTABLE_RUN, datagram) is not None


def judge_gossip_wire(node: str, probe_output: str, port: int, seconds: float) -> Check:
    """No plaintext in the gossip datagrams a node sent or received during the capture; no
    datagram at all proves nothing and fails."""
    import base64
    import binascii

    hop, check = f"{node} <-> peers", f"wire capture udp/{port}: no plaintext gossip"
    line = next((ln for ln in probe_output.splitlines() if ln.startswith("pcap=")), None)
    if line is None:
        return Check(hop, check, False, probe_output.strip()[-160:] or "the capture printed nothing")
    try:
        datagrams = udp_payloads(base64.b64decode(line[5:]), port)
    except (binascii.Error, ValueError):
        return Check(hop, check, False, "the capture is not a readable pcap")
    if not datagrams:
        return Check(hop, check, False, f"no UDP gossip in {seconds:g} s: the capture proves nothing (is the cluster up?)")
    plain = sum(looks_plain(d) for d in datagrams)
    return Check(hop, check, plain == 0, f"{len(datagrams)} datagrams in {seconds:g} s, {plain} in plaintext")


def gossip_wire_checks(cfg: StackConfig, hosts: Hosts, seconds: float = 3.0, count: int = 40) -> list[Check]:
    """One row per node when the stack encrypts gossip: a short tcpdump on the node's gossip UDP
    port (SSH tunnels carry gossip's TCP only; its UDP crosses the wire sealed by memberlist).
    The nodes are captured at the same time."""
    from concurrent.futures import ThreadPoolExecutor

    if not (cfg.cluster.enabled and cfg.cluster.gossip_encryption):
        return []
    port = cfg.cluster.gossip_port
    params = f"seconds={seconds:g}\ncount={count}\nport={port}\n"
    with ThreadPoolExecutor(max_workers=len(cfg.nodes)) as pool:
        runs = list(pool.map(lambda n: hosts.run(n.address, n.ssh, params + GOSSIP_CAPTURE, timeout=int(seconds) + 30), cfg.nodes))
    return [judge_gossip_wire(n.name, r.stdout + r.stderr, port, seconds) for n, r in zip(cfg.nodes, runs, strict=True)]


def capture_evidence(cfg: StackConfig, outputs: dict[str, object], interface: str, seconds: float = 11.0) -> list[Check]:
    """Lab only: capture on the bridge while real traffic flows (requests through NGINX, the nodes'
    periodic DB checks, cluster gossip) and count plaintext payload bytes per hop."""
    from tools.capture import analyze, capture
    from tools.load import Load

    assert cfg.proxy.address is not None  # StackConfig validation requires it
    db_port, db_kind = cfg.database.effective_port, ("mysql" if cfg.database.engine == "mysql" else "postgres")
    ports = {443: "tls", cfg.mattermost.port: "tls", db_port: db_kind}
    bpf = " or ".join(f"tcp port {p}" for p in [*ports, cfg.cluster.gossip_port])
    with tempfile.TemporaryDirectory(prefix="mmtls-capture-") as d:
        pcap = Path(d) / "audit.pcap"
        with capture(interface, bpf, pcap):
            with Load(cfg.proxy.server_name, cfg.proxy.address, str(outputs["caCertPem"]), interval=0.1, max_seconds=seconds):
                time.sleep(seconds)
        reports = analyze(pcap, {**ports, cfg.cluster.gossip_port: "tls"})
    names = {443: "browser -> proxy", cfg.mattermost.port: "proxy -> nodes", db_port: "nodes -> database"}
    checks = []
    for port, hop in names.items():
        r = reports[port]
        ok = r.plaintext_bytes == 0 and r.streams > 0
        checks.append(Check(hop, f"wire capture tcp/{port}: 0 plaintext bytes", ok,
                            f"{r.streams} streams, {r.payload_bytes} bytes, {r.plaintext_bytes} plaintext"))
    if cfg.cluster.enabled:
        r = reports[cfg.cluster.gossip_port]
        checks.append(Check("node <-> node", f"wire capture tcp/{cfg.cluster.gossip_port}: only via SSH", r.streams == 0,
                            f"{r.streams} gossip TCP streams on the wire (tunnelled through port 22)"))
    return checks


def render(checks: list[Check]) -> str:
    w1 = max(len(c.hop) for c in checks)
    w2 = max(len(c.check) for c in checks)
    lines = [f"{'HOP':<{w1}}  {'CHECK':<{w2}}  RESULT  DETAIL"]
    for c in checks:
        detail = " ".join(c.detail.split())[:100]
        lines.append(f"{c.hop:<{w1}}  {c.check:<{w2}}  {'ok' if c.ok else 'FAIL':<6}  {detail}")
    failed = sum(not c.ok for c in checks)
    lines.append(f"{len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines)


@contextmanager
def private_dir() -> Iterator[Path]:
    """A temporary directory only its owner can enter (mode 0700), removed on exit."""
    with tempfile.TemporaryDirectory(prefix="mmtls-audit-") as d:
        os.chmod(d, 0o700)
        yield Path(d)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", default="lab")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--state", help="replay engine state file (default: the stack's under .lab/state)")
    ap.add_argument(
        "--browser-ca", metavar="PEM_FILE",
        help="CA bundle browsers trust, for a public certificate the stack did not issue (default: the proxy's system store)",
    )
    ap.add_argument("--capture", metavar="IFACE", help="lab: also capture on this bridge (e.g. mmtls-br0) and count plaintext bytes per hop")
    args = ap.parse_args(argv)
    cfg = load_stack(args.stack)
    outputs = stack_outputs(args.stack, args.state)
    checks = capture_evidence(cfg, outputs, args.capture) if args.capture else []
    with private_dir() as d:
        browser_ca = Path(args.browser_ca).read_text() if args.browser_ca else None
        checks += audit(cfg, outputs, Hosts(cfg, d), browser_ca)
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        print(render(checks))
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

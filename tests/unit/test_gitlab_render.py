"""GitLab renderers, tested by running what they render: Ruby evaluates the gitlab.rb block
(hostile values included) back to exactly the inputs, `ruby -c` accepts a realistic gitlab.rb
with the block inserted by remote_files' real script, destroy leaves gitlab.rb byte-identical,
the keypair check and gitlab-ctl snippets run against stand-ins; plus the GitLab config checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from components import gitlab_render as gr
from components.config import parse
from components.remote_files_render import encode_bundle, render_block_apply, render_block_restore
from tests.helpers.certs import self_signed
from tests.helpers.gitlab import HARNESS
from tests.helpers.scripts import run_script, syntax_ok
from tests.helpers.stack_config import HOSTKEY, good, parse_error

RUBY = shutil.which("ruby")
needs_ruby = pytest.mark.skipif(RUBY is None, reason="ruby not installed (apt-get install ruby)")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="remote_files scripts install as root")

HOSTILE = [
    "plain",
    "it's",
    'say "hi"',
    "back\\slash\\",
    "\\'",
    '#{system("touch /tmp/pwned-gitlab-rb")}',
    "#@ivar #$0 #@@cvar",
    "new\nline\r\n",
    "nul\x00byte",
    "tab\there",
    "\x7f\x1b[31m",
    "émoji 🚀 ü",
    "__END__",
    "%q(x) `id` $(id)",
    "",
]

# Modelled on the gitlab.rb Omnibus writes (mostly comments) plus typical edits, including an
# earlier, plain-HTTP Mattermost set-up our block must override.
REALISTIC_GITLAB_RB = """\
## GitLab configuration settings
##! This file is generated during initial installation and **is not** modified
##! during upgrades.
##! Check out the latest version of this file to know about the different
##! settings that can be configured by this file, which may be found at:
##! https://gitlab.com/gitlab-org/omnibus-gitlab/raw/master/files/gitlab-config-template/gitlab.rb.template

external_url 'https://gitlab.example.com'

# gitlab_rails['time_zone'] = 'UTC'
gitlab_rails['smtp_enable'] = true
gitlab_rails['smtp_address'] = "smtp.example.com"
gitlab_rails['smtp_port'] = 587
gitlab_rails['gitlab_email_from'] = 'gitlab@example.com'
gitlab_rails['ldap_servers'] = YAML.load <<-'EOS'
  main:
    label: 'LDAP'
    host: 'ldap.example.com'
EOS

nginx['redirect_http_to_https'] = true
letsencrypt['enable'] = false

mattermost_external_url 'http://mattermost.example.com'
mattermost['sql_data_source'] = "user:pass@tcp(old:3306)/mm"
# mattermost_nginx['ssl_certificate'] = "/etc/gitlab/ssl/mattermost.crt"
prometheus_monitoring['enable'] = false
"""

# Defines just enough of Omnibus' DSL to evaluate gitlab.rb, then prints what Mattermost gets.
PATHS = gr.gitlab_paths("/etc/gitlab/ssl", "mattermost.example.com", "/etc/gitlab/trusted-certs/ca.crt")
DSN = "postgres://mmuser:p%40ss%27w%23%7Bx%7D@10.251.0.21:5432/mattermost?sslmode=verify-full&sslrootcert=/etc/gitlab/trusted-certs/ca.crt&connect_timeout=10"


def ruby_eval(tmp_path: Path, source: str) -> dict:
    f = tmp_path / "gitlab.rb"
    f.write_bytes(source.encode())
    h = tmp_path / "harness.rb"
    h.write_text(HARNESS)
    r = subprocess.run([RUBY, str(h), str(f)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@needs_ruby
def test_ruby_str_evaluates_back_to_every_hostile_value(tmp_path: Path) -> None:
    src = "".join(f"mattermost[{gr.ruby_str(f'k{i}')}] = {gr.ruby_str(v)}\n" for i, v in enumerate(HOSTILE))
    assert src.count("\n") == len(HOSTILE), "one line per value"
    assert all(ord(c) < 128 for c in src), "the literal is pure ASCII"
    out = ruby_eval(tmp_path, src)
    assert out["mattermost"] == {f"k{i}": v for i, v in enumerate(HOSTILE)}
    assert not Path("/tmp/pwned-gitlab-rb").exists(), "no interpolation ran"


def test_ruby_str_refuses_what_utf8_cannot_carry() -> None:
    with pytest.raises(ValueError):
        gr.ruby_str("\ud800")


@needs_ruby
@pytest.mark.parametrize("dsn", [DSN, None, "postgres://u:'\"\\#{x}\n\x00@h/db?sslmode=verify-full"])
def test_block_sets_exactly_the_values(tmp_path: Path, dsn: str | None) -> None:
    block = gr.render_gitlab_rb_block("https://mattermost.example.com", PATHS, dsn)
    out = ruby_eval(tmp_path, block)
    assert out["url"] == "https://mattermost.example.com"
    assert out["mattermost_nginx"] == {
        "redirect_http_to_https": True,
        "ssl_certificate": "/etc/gitlab/ssl/mattermost.example.com.crt",
        "ssl_certificate_key": "/etc/gitlab/ssl/mattermost.example.com.key",
    }
    if dsn is None:
        assert out["mattermost"] == {}, "the bundled database stays as it is"
    else:
        assert out["mattermost"] == {"sql_driver_name": "postgres", "sql_data_source": dsn}
    assert "connection_security" not in block.lower() and "ConnectionSecurity" not in block


@needs_ruby
@needs_root
def test_realistic_gitlab_rb_with_block_passes_ruby_c_overrides_and_restores_byte_identical(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    rb = etc / "gitlab.rb"
    rb.write_text(REALISTIC_GITLAB_RB)
    rb.chmod(0o600)
    before = rb.read_bytes()
    state = str(tmp_path / "state")
    log = tmp_path / "gitlab-ctl.calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # a clearly named stand-in for Omnibus' gitlab-ctl: records its arguments, changes nothing
    standin = bin_dir / "gitlab-ctl"
    standin.write_text(f'#!/bin/sh\n# STAND-IN for gitlab-ctl (test only)\necho "$*" >> {log}\n')
    standin.chmod(0o755)
    use_standin = f"PATH={bin_dir}:$PATH\n"

    apply = render_block_apply(
        "gitlab-gitlab-rb",
        str(rb),
        position="bottom",
        validate=gr.render_ruby_check(str(rb)),
        activate=use_standin + gr.render_reconfigure(restart_mattermost=True),
        state_dir=state,
    )
    block = gr.render_gitlab_rb_block("https://mattermost.example.com", PATHS, DSN)
    r = run_script(apply, encode_bundle([block]))
    assert r.returncode == 0, r.stderr
    assert log.read_text().splitlines() == ["reconfigure", "restart mattermost"]
    assert oct(rb.stat().st_mode & 0o777) == "0o600"
    assert subprocess.run([RUBY, "-c", str(rb)], capture_output=True).returncode == 0
    text = rb.read_text()
    assert text.startswith(REALISTIC_GITLAB_RB), "the rest of the file is untouched"

    out = ruby_eval(tmp_path, text)
    assert out["url"] == "https://mattermost.example.com", "the block at the bottom wins over the earlier http URL"
    assert out["mattermost"]["sql_data_source"] == DSN
    assert out["gitlab_rails"]["smtp_address"] == "smtp.example.com"

    # converge again: nothing changes, nothing is reconfigured
    r = run_script(apply, encode_bundle([block]))
    assert r.returncode == 0 and "unchanged" in r.stdout
    assert len(log.read_text().splitlines()) == 2

    restore = render_block_restore(
        "gitlab-gitlab-rb",
        str(rb),
        restore_activate=use_standin + gr.render_reconfigure(restart_mattermost=True),
        state_dir=state,
    )
    r = run_script(restore)
    assert r.returncode == 0, r.stderr
    assert rb.read_bytes() == before
    assert log.read_text().splitlines()[2:] == ["reconfigure", "restart mattermost"]


@needs_ruby
@needs_root
def test_ruby_syntax_error_rolls_gitlab_rb_back_without_reconfigure(tmp_path: Path) -> None:
    rb = tmp_path / "gitlab.rb"
    rb.write_text(REALISTIC_GITLAB_RB)
    log = tmp_path / "calls"
    apply = render_block_apply(
        "b",
        str(rb),
        validate=gr.render_ruby_check(str(rb)),
        activate=f"echo reconfigure >> {log}",
        state_dir=str(tmp_path / "s"),
    )
    r = subprocess.run(
        ["/bin/sh", "-c", apply],
        input=encode_bundle(["mattermost['x'] = 'unterminated\n"]),
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "validation failed" in r.stderr
    assert rb.read_text() == REALISTIC_GITLAB_RB
    assert not log.exists()


def test_reconfigure_restarts_mattermost_only_with_a_dsn() -> None:
    assert gr.render_reconfigure(False) == "gitlab-ctl reconfigure\n"
    assert gr.render_reconfigure(True) == "gitlab-ctl reconfigure\ngitlab-ctl restart mattermost\n"


@pytest.mark.parametrize(
    ("dsn", "mode", "want"),
    [
        (DSN, None, DSN),
        (DSN, "verify-ca", DSN.replace("sslmode=verify-full", "sslmode=verify-ca")),
        (
            "postgres://u:p%2B+@h:5432/db?connect_timeout=10&x=a+b",
            "verify-full",
            "postgres://u:p%2B+@h:5432/db?sslmode=verify-full&connect_timeout=10&x=a+b",
        ),
        ("postgres://u@h/db", "require", "postgres://u@h/db?sslmode=require"),
    ],
)
def test_with_sslmode_changes_only_sslmode(dsn: str, mode: str | None, want: str) -> None:
    assert gr.with_sslmode(dsn, mode) == want


def test_with_sslmode_refuses_non_postgres_dsn() -> None:
    with pytest.raises(ValueError):
        gr.with_sslmode("user:pw@tcp(h:3306)/db", "verify-full")


def _pair(tmp_path: Path, name: str) -> tuple[Path, Path]:
    cert, key = self_signed([name])
    c, k = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    c.write_text(cert)
    k.write_text(key)
    return c, k


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_keypair_check_accepts_a_pair_and_refuses_a_stranger(tmp_path: Path) -> None:
    c1, k1 = _pair(tmp_path, "a")
    _, k2 = _pair(tmp_path, "b")
    ok = subprocess.run(["sh", "-euc", gr.render_check_keypair(str(c1), str(k1))], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(["sh", "-euc", gr.render_check_keypair(str(c1), str(k2))], capture_output=True, text=True)
    assert bad.returncode != 0 and "is not the key of" in bad.stderr
    broken = tmp_path / "broken.crt"
    broken.write_text("not a cert")
    r = subprocess.run(["sh", "-euc", gr.render_check_keypair(str(broken), str(k1))], capture_output=True, text=True)
    assert r.returncode != 0


def test_nginx_reload_only_when_nginx_runs(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    for running, want in ((True, ["status nginx", "hup nginx"]), (False, ["status nginx"])):
        log.unlink(missing_ok=True)
        b = tmp_path / "bin"
        b.mkdir(exist_ok=True)
        s = b / "gitlab-ctl"
        s.write_text(
            f'#!/bin/sh\n# STAND-IN for gitlab-ctl\necho "$*" >> {log}\n[ "$1" != status ] || exit {0 if running else 6}\n'
        )
        s.chmod(0o755)
        r = subprocess.run(
            ["sh", "-euc", f"PATH={b}:$PATH\n" + gr.render_nginx_reload()], capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        assert log.read_text().splitlines() == want


def test_scripts_quote_hostile_paths(tmp_path: Path) -> None:
    weird = tmp_path / "we'ird $(touch pwned) dir"
    weird.mkdir()
    c, k = _pair(weird, "x")
    r = subprocess.run(
        ["sh", "-euc", gr.render_check_keypair(str(c), str(k))], capture_output=True, text=True, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "pwned").exists()
    for script in (gr.render_ruby_check(str(weird / "g;rm -rf x.rb")), gr.render_check_keypair("/a b", "/c'd")):
        assert syntax_ok(script)


# ------------------------------------------------------------------ config validation
# (the values the config refuses for GitLab are rows of tests/helpers/stack_config.BAD, which the
# parser's and the whole program's tests both run)


def _cfg(**gitlab: object) -> dict:
    d = good()
    d["database"]["engine"] = "postgres"
    d["gitlab"] = {"enabled": True, "address": "10.0.0.31", "ssh": {"hostKey": HOSTKEY}, **gitlab}
    return d


def test_defaults_and_normalised_url() -> None:
    g = parse(_cfg(mattermostExternalUrl="https://Chat.Example.com:8443/")).gitlab
    assert g.mattermost_external_url == "https://chat.example.com:8443"
    assert g.mattermost_host == "chat.example.com"
    assert g.external_postgres and g.sslmode is None and g.tls_source == "ca"


def test_version_19_is_fine_while_gitlab_is_disabled() -> None:
    d = _cfg(version="19.0.0")
    d["gitlab"]["enabled"] = False
    assert parse(d).gitlab.version == "19.0.0"


def test_require_is_accepted_knowingly() -> None:
    assert parse(_cfg(sslmode="require", allowUnverifiedTls=True)).gitlab.sslmode == "require"


def test_external_postgres_needs_postgres_engine() -> None:
    d = _cfg()
    d["database"]["engine"] = "mysql"
    assert "gitlab.externalPostgres:" in parse_error(d)
    d["gitlab"]["externalPostgres"] = False
    assert parse(d).gitlab.external_postgres is False


def test_provided_certificate_must_name_the_host_and_match_the_key() -> None:
    cert, key = self_signed(["*.example.com"])
    d = _cfg(tlsSource="provided", tlsCert=cert, mattermostExternalUrl="https://mm.example.com")
    d["gitlabTlsKey"] = key
    assert parse(d).gitlab.tls_cert == cert.strip()
    _, other_key = self_signed(["x.example.com"])
    d["gitlabTlsKey"] = other_key
    msg = parse_error(d)
    assert "gitlabTlsKey:" in msg and "BEGIN" not in msg and other_key[40:80] not in msg
    d["gitlabTlsKey"] = key
    d["gitlab"]["mattermostExternalUrl"] = "https://mm.other.org"
    assert "gitlab.tlsCert:" in parse_error(d)
    d["gitlab"]["mattermostExternalUrl"] = "https://a.b.example.com"
    assert "gitlab.tlsCert:" in parse_error(d), "a wildcard covers one label only"

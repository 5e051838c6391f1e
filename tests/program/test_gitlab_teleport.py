"""GitlabMattermost and TeleportPlugin under Pulumi's mock runtime (no SSH, no engine).

A MockMonitor subclass records every RegisterResource request as the engine would receive it
(parent, dependencies, additionalSecretOutputs, inputs with their secret markers), so these
tests check what the engine is told: the resource graph and names, that the DSN and the bot
token only travel in secret stdin and never in command text, and what lands in each file.
"""

from __future__ import annotations

import tomllib
from typing import Any

import pulumi
import pytest

from components import adapter
from components.config import StackConfig, parse
from components.gitlab import GitlabMattermost
from components.pki import Pki, PkiArgs
from components.remote_files_render import stdin_contents
from components.teleport import TeleportPlugin
from tests.helpers.certs import self_signed
from tests.helpers.pulumi_mocks import (
    COMMAND,
    ProviderMocks,
    RecordingMonitor,
    Registration,
    is_secret,
    plain,
    runs,
    start,
)
from tests.helpers.stack_config import HOSTKEY, good

DB_PASSWORD = "Pa55'w\"rd#{x}"
DSN = (
    "postgres://mmuser:Pa55%27w%22rd%23%7Bx%7D@10.251.0.21:5432/mattermost"
    "?sslmode=verify-full&sslrootcert=/etc/gitlab/trusted-certs/mattermost-transport-ca.crt&connect_timeout=10"
)
TOKEN = "xq7nd3kgm8r1bz4yyu5cw9ptoa"


class Mocks(ProviderMocks):
    """Fake PEMs for pulumi-tls, an echo of the owner for remote commands."""

    validity_end = "2027-01-01T00:00:00Z"

    def command_stdout(self, name: str) -> str:
        return f"{name}: done\n"


def decode_stdin(reg: Registration) -> list[str]:
    return stdin_contents(plain(reg.inputs["stdin"]))


def command_texts(reg: Registration) -> str:
    return "\n".join(plain(reg.inputs.get(k, "")) or "" for k in ("create", "update", "delete"))


def config(**over: Any) -> StackConfig:
    d = good()
    d["database"]["engine"] = "postgres"
    d["gitlab"] = {"enabled": True, "host": "gitlab", "address": "10.251.0.31", "ssh": {"hostKey": HOSTKEY}}
    d["teleport"] = {"enabled": True, "host": "plugin", "address": "10.251.0.30", "ssh": {"hostKey": HOSTKEY}}
    d["teleportToken"] = TOKEN
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(d.get(key), dict):
            d[key].update(value)
        else:
            d[key] = value
    return parse(d)


def run(build: Any) -> tuple[RecordingMonitor, Any, dict[str, Any]]:
    """Build under fresh mocks; return the monitor, the component and its resolved outputs."""
    monitor = start(Mocks())
    built: dict[str, Any] = {}
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> Any:
        c = built["component"] = build()
        names = [a for a in ("url", "cert_expiry", "status", "mattermost_url") if hasattr(c, a)]
        return pulumi.Output.all(*[getattr(c, a) for a in names]).apply(
            lambda vs: resolved.update(zip(names, vs, strict=True))
        )

    program()
    return monitor, built["component"], resolved


def build_gitlab(cfg: StackConfig, dsn: str | None = DSN) -> Any:
    pki = Pki("pki", PkiArgs(ca=cfg.ca))
    db_ready = pulumi.CustomResource(COMMAND, "postgres-ready", {"create": "true"})
    return GitlabMattermost(
        "gitlab", adapter.gitlab_args(cfg, pki, pulumi.Output.secret(dsn) if dsn is not None else None, [db_ready])
    )


def build_teleport(cfg: StackConfig) -> Any:
    pki = Pki("pki", PkiArgs(ca=cfg.ca))
    proxy_ready = pulumi.CustomResource(COMMAND, "proxy-ready", {"create": "true"})
    return TeleportPlugin("teleport", adapter.teleport_args(cfg, pki, [proxy_ready]))


# ------------------------------------------------------------------ GitLab


def test_gitlab_graph_names_parents_and_order() -> None:
    monitor, comp, _ = run(lambda: build_gitlab(config()))
    regs = monitor.named()
    component = regs["gitlab"]
    assert component.type == "mattermost-tls:gitlab:GitlabMattermost"
    mine = {n for n, r in regs.items() if r.parent == component.urn}
    assert mine == {
        "gitlab-gitlab-mattermost-key",
        "gitlab-gitlab-mattermost-csr",
        "gitlab-gitlab-mattermost-cert",
        "gitlab-gitlab-tls-files",
        "gitlab-gitlab-rb",
    }
    block, files = regs["gitlab-gitlab-rb"], regs["gitlab-gitlab-tls-files"]
    assert files.urn in block.dependencies, "the certificate is in place before gitlab.rb names it"
    assert regs["postgres-ready"].urn in block.dependencies, "the database is live before Mattermost is pointed at it"
    csr = regs["gitlab-gitlab-mattermost-csr"].inputs
    assert csr["dnsNames"] == ["mattermost.example.com"]
    assert comp.installed == {
        "cert": "/etc/gitlab/ssl/mattermost.example.com.crt",
        "key": "/etc/gitlab/ssl/mattermost.example.com.key",
        "ca": "/etc/gitlab/trusted-certs/mattermost-transport-ca.crt",
        "gitlabRb": "/etc/gitlab/gitlab.rb",
    }


def test_gitlab_dsn_and_key_only_in_secret_stdin() -> None:
    monitor, _, _ = run(lambda: build_gitlab(config()))
    for name in ("gitlab-gitlab-rb", "gitlab-gitlab-tls-files"):
        reg = monitor.by_name(name)
        assert is_secret(reg.inputs["stdin"]), f"{name}: stdin must be secret"
        assert {"stdout", "stderr"} <= set(reg.additional_secret_outputs)
        assert plain(reg.inputs["logging"]) == "none"
        text = command_texts(reg)
        for leak in (DSN, DB_PASSWORD, "Pa55", "FAKE-gitlab-gitlab-mattermost-key"):
            assert leak not in text, f"{name}: {leak!r} in command text"
        for key, value in reg.inputs.items():
            if key != "stdin" and not is_secret(value):
                assert "Pa55" not in str(value), f"{name}.{key} carries the password in the clear"


def test_gitlab_block_content_and_scripts() -> None:
    monitor, _, _ = run(lambda: build_gitlab(config()))
    block = monitor.by_name("gitlab-gitlab-rb")
    (content,) = decode_stdin(block)
    assert 'mattermost_external_url "https://mattermost.example.com"' in content
    assert 'mattermost_nginx["redirect_http_to_https"] = true' in content
    assert 'mattermost["sql_driver_name"] = "postgres"' in content
    # the DSN reaches gitlab.rb (Ruby-escaped: '#' before '{' is escaped)
    assert 'mattermost["sql_data_source"] = "postgres://mmuser:Pa55%27w%22rd%23%7Bx%7D@' in content
    assert "sslmode=verify-full&sslrootcert=/etc/gitlab/trusted-certs/mattermost-transport-ca.crt" in content
    create = plain(runs(block, "create"))
    assert "gitlab-ctl reconfigure" in create and "gitlab-ctl restart mattermost" in create
    assert "-c /etc/gitlab/gitlab.rb" in create, "Ruby syntax check before reconfigure"
    assert "gitlab-ctl reconfigure" in plain(runs(block, "delete"))
    files = monitor.by_name("gitlab-gitlab-tls-files")
    cert, key, ca = decode_stdin(files)
    assert "FAKE-gitlab-gitlab-mattermost-cert" in cert and "FAKE-gitlab-gitlab-mattermost-key" in key
    assert "FAKE-pki-ca-cert" in ca
    create = plain(runs(files, "create"))
    assert "file 0600 root:root" in create and "file 0644 root:root" in create


def test_gitlab_sslmode_override_reaches_the_block() -> None:
    monitor, _, _ = run(lambda: build_gitlab(config(gitlab={"sslmode": "verify-ca"})))
    (content,) = decode_stdin(monitor.by_name("gitlab-gitlab-rb"))
    assert "sslmode=verify-ca&sslrootcert=" in content and "verify-full" not in content


def test_gitlab_without_external_postgres_keeps_the_bundled_database() -> None:
    monitor, _, _ = run(lambda: build_gitlab(config(gitlab={"externalPostgres": False}), dsn=None))
    block = monitor.by_name("gitlab-gitlab-rb")
    (content,) = decode_stdin(block)
    assert "sql_data_source" not in content and "mattermost_external_url" in content
    assert "gitlab-ctl restart mattermost" not in plain(runs(block, "create"))
    assert not is_secret(block.inputs["stdin"]), "nothing secret in this block"


def test_gitlab_provided_certificate_and_key() -> None:
    cert, key = self_signed(["mattermost.example.com"])
    cfg = config(gitlab={"tlsSource": "provided", "tlsCert": cert}, gitlabTlsKey=key)
    monitor, _, _ = run(lambda: build_gitlab(cfg))
    assert not any(n.startswith("gitlab-gitlab-mattermost-") for n in monitor.named()), "no CA-issued cert"
    files = monitor.by_name("gitlab-gitlab-tls-files")
    got_cert, got_key, _ = decode_stdin(files)
    assert got_cert == cert.strip() and got_key == key.strip()
    assert is_secret(files.inputs["stdin"]) and key.splitlines()[1] not in command_texts(files)


def test_gitlab_dsn_must_match_the_config() -> None:
    with pytest.raises(ValueError, match="dsn"):
        run(lambda: build_gitlab(config(), dsn=None))


# ------------------------------------------------------------------ Teleport


def test_teleport_graph_and_token_only_in_secret_stdin() -> None:
    monitor, comp, _ = run(lambda: build_teleport(config()))
    regs = monitor.named()
    component = regs["teleport"]
    assert component.type == "mattermost-tls:teleport:TeleportPlugin"
    assert {n for n, r in regs.items() if r.parent == component.urn} == {
        "plugin-teleport-mattermost-files",
        "plugin-teleport-mattermost-enable",
    }
    files, enable = regs["plugin-teleport-mattermost-files"], regs["plugin-teleport-mattermost-enable"]
    assert regs["proxy-ready"].urn in files.dependencies
    assert files.urn in enable.dependencies, "enabled after the unit file exists, disabled before it goes"
    assert is_secret(files.inputs["stdin"])
    assert {"stdout", "stderr"} <= set(files.additional_secret_outputs)
    assert plain(files.inputs["logging"]) == "none"
    for reg in (files, enable):
        assert TOKEN not in command_texts(reg)
        assert all(TOKEN not in str(v) for k, v in reg.inputs.items() if not is_secret(v))
    assert comp.installed == {
        "config": "/etc/teleport-mattermost.toml",
        "unit": "/etc/systemd/system/teleport-mattermost.service",
        "ca": "/etc/teleport-mattermost/ca/mattermost-transport-ca.crt",
    }


def test_teleport_files_content() -> None:
    monitor, _, _ = run(lambda: build_teleport(config(teleport={"recipients": ["ops/requests", "a@example.com"]})))
    files = monitor.by_name("plugin-teleport-mattermost-files")
    toml, unit, ca = decode_stdin(files)
    assert tomllib.loads(toml) == {
        "teleport": {
            "addr": "teleport.example.com:443",
            "identity": "/var/lib/teleport/plugins/mattermost/auth_id",
            "refresh_identity": True,
        },
        "mattermost": {
            "url": "https://chat.example.com",
            "token": TOKEN,
            "recipients": ["ops/requests", "a@example.com"],
        },
        "log": {"output": "stderr", "severity": "INFO"},
    }
    assert "Environment=SSL_CERT_DIR=/etc/teleport-mattermost/ca:/etc/ssl/certs" in unit
    assert "FAKE-pki-ca-cert" in ca
    create = plain(runs(files, "create"))
    assert "file 0600 root:root" in create  # the TOML
    assert "/etc/teleport-mattermost.toml" in create
    enable = runs(monitor.by_name("plugin-teleport-mattermost-enable"), "create")
    assert "systemctl enable" in enable and "systemctl start" not in enable.replace("'systemctl start", "")


def test_teleport_rbac_files_only_when_asked() -> None:
    monitor, comp, _ = run(lambda: build_teleport(config(teleport={"rbac": True})))
    files = monitor.by_name("plugin-teleport-mattermost-files")
    contents = decode_stdin(files)
    assert len(contents) == 6
    assert sorted(k for k in comp.installed if k.startswith("rbac/")) == [
        "rbac/access-plugin-impersonator.yaml",
        "rbac/access-plugin.yaml",
        "rbac/editor-request-rbac.yaml",
    ]
    assert any("access-plugin-impersonator" in c for c in contents)
    monitor, _, _ = run(lambda: build_teleport(config()))
    assert len(decode_stdin(monitor.by_name("plugin-teleport-mattermost-files"))) == 3


def test_teleport_status_output_reports_the_enable_run() -> None:
    _, _, outputs = run(lambda: build_teleport(config()))
    assert outputs == {
        "status": "plugin-teleport-mattermost-enable: done\n",
        "mattermost_url": "https://chat.example.com",
    }


def test_gitlab_outputs() -> None:
    _, _, outputs = run(lambda: build_gitlab(config()))
    assert outputs == {"url": "https://mattermost.example.com", "cert_expiry": "2027-01-01T00:00:00Z"}

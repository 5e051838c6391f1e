"""The config schema: good configs parse with the right defaults; every bad one fails with the
full key and a fix, and never echoes a secret."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from components.config import ConfigError, load, parse
from tests.helpers.stack_config import BAD, HOSTKEY, PRIV, assert_names_key_and_fix, good, with_gitlab


def test_good_config_and_defaults() -> None:
    cfg = parse(good())
    assert [n.name for n in cfg.nodes] == ["mm1", "mm2", "mm3"]
    assert cfg.database.effective_tls_mode == "true"
    assert cfg.database.effective_port == 3306
    assert cfg.node_setting(cfg.nodes[0], "service_group") == "mattermost"
    assert cfg.version_of(cfg.nodes[0]) == (10, 11, 0)
    pg = good()
    pg["database"]["engine"] = "postgres"
    assert parse(pg).database.effective_tls_mode == "verify-full"
    assert parse(pg).database.effective_port == 5432


def test_gitlab_database_defaults_are_its_own() -> None:
    d = good()
    d["database"]["engine"] = "postgres"
    with_gitlab()(d)
    cfg = parse(d)
    gl, db = cfg.gitlab, cfg.database
    assert (gl.database_name, gl.database_user) == ("gitlab_mattermost", "gitlab_mmuser")
    assert gl.database_name != db.name and gl.database_user != db.user
    with_gitlab(databaseName="chat_gl", databaseUser="chat_gl")(d)  # one name for both is fine
    assert parse(d).gitlab.database_user == "chat_gl"


def test_unit_suffix_is_normalised_and_overrides_win() -> None:
    d = good()
    d["mattermost"] = {"unit": "mattermost.service", "tlsDir": "/etc/mm-tls/"}
    d["nodes"][1]["unit"] = "mattermost-b.service"
    cfg = parse(d)
    assert cfg.mattermost.unit == "mattermost"
    assert cfg.mattermost.tls_dir == "/etc/mm-tls"
    assert cfg.node_setting(cfg.nodes[1], "unit") == "mattermost-b"
    assert cfg.node_setting(cfg.nodes[0], "unit") == "mattermost"




@pytest.mark.parametrize("mutate,key,fix", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_names_key_and_fix(mutate: Any, key: str, fix: str) -> None:
    d = copy.deepcopy(good())
    mutate(d)
    msg = assert_names_key_and_fix(d, key, fix)
    assert "PRIVATE KEY" not in msg and PRIV.splitlines()[1] not in msg, "a secret leaked into the error"


def test_at_least_thirty_bad_configs() -> None:
    assert len(BAD) >= 30


def _getter(raw: dict[str, Any]):
    def get(key: str) -> str | None:
        k = key.split(":", 1)[1]
        if k not in raw:
            return None
        v = raw[k]
        return v if isinstance(v, str) else json.dumps(v)

    return get


def test_load_reads_pulumi_style_values_and_rejects_plain_secrets() -> None:
    raw = good()
    cfg = load(_getter(raw), set_keys=set(raw), is_secret=lambda k: k.endswith("sshPrivateKey"))
    assert cfg.proxy.server_name == "chat.example.com"
    with pytest.raises(ConfigError, match=r"sshPrivateKey: this value is a secret.*--secret sshPrivateKey"):
        load(_getter(raw), set_keys=set(raw), is_secret=lambda k: False)


def test_load_rejects_unknown_keys_with_a_suggestion() -> None:
    raw = good()
    raw["node"] = []
    with pytest.raises(ConfigError, match=r"mattermost-transport-encryption:node: unknown key \(did you mean 'nodes'\?\)"):
        load(_getter(raw), set_keys=set(raw), is_secret=lambda k: True)


def test_inventory_fills_addresses_and_keys(tmp_path) -> None:
    key_file = tmp_path / "id"
    key_file.write_text(PRIV)
    inv = {
        "sshUser": "root",
        "sshPrivateKeyFile": str(key_file),
        "hosts": {
            "mm1": {"address": "10.251.0.101", "port": 22, "hostKey": HOSTKEY},
            "proxy": {"address": "10.251.0.10", "port": 22, "hostKey": HOSTKEY},
            "postgres": {"address": "10.251.0.21", "port": 22, "hostKey": HOSTKEY},
        },
    }
    (tmp_path / "inventory.json").write_text(json.dumps(inv))
    cfg = parse({"inventoryFile": "inventory.json", "nodes": [{"name": "mm1"}]}, base_dir=tmp_path)
    assert cfg.nodes[0].address == "10.251.0.101"
    assert cfg.proxy.address == "10.251.0.10"
    assert cfg.database.address == "10.251.0.21"
    assert cfg.ssh_private_key.get_secret_value().strip() == PRIV.strip()


def test_missing_inventory_says_how_to_make_it(tmp_path) -> None:
    with pytest.raises(ConfigError, match="inventoryFile: .* does not exist; start the lab first"):
        parse({"inventoryFile": "nope.json", "nodes": [{"name": "mm1"}]}, base_dir=tmp_path)


def test_good_edge_values_pass() -> None:
    d = good()
    d["teleport"] = {"authAddr": "[2001:db8::1]:3025"}
    d["proxy"]["siteFile"] = "/etc/nginx/" + "s" * 200
    d["nodes"][0]["ssh"]["hostKey"] = HOSTKEY
    cfg = parse(d)
    assert cfg.teleport.auth_addr == "[2001:db8::1]:3025"
    d["teleport"] = {"authAddr": "Teleport.Example.com:443"}
    assert parse(d).teleport.auth_addr == "teleport.example.com:443"


def test_empty_project_defaults_mean_unset() -> None:
    """Pulumi.yaml gives optional secrets and inventoryFile `default: ""` (a declared key without a
    default is required by the CLI); the CLI hands that default to the program as a plain value."""
    raw = good()
    raw.update({k: "" for k in ("dbPassword", "dbAdminPassword", "proxyTlsKey", "teleportToken", "gitlabTlsKey", "inventoryFile")})
    cfg = load(_getter(raw), set_keys=set(raw), is_secret=lambda k: k.endswith("sshPrivateKey"))
    assert cfg.db_password is None and cfg.teleport_token is None
    raw["sshPrivateKey"] = ""
    with pytest.raises(ConfigError, match=r"sshPrivateKey: missing: set it with `pulumi config set --secret sshPrivateKey"):
        load(_getter(raw), set_keys=set(raw), is_secret=lambda k: False)

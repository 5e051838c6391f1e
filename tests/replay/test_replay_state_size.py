"""The state's size as a Pulumi backend would store it: every secret value sealed (AES-256-GCM,
`v1:<nonce>:<sealed>`), never smaller than the replay's clear-text file."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

from lab.replay.model import Resource
from lab.replay.props import SECRET_SIG, SIG_KEY
from lab.replay.state import State, encrypted_bytes, save


def _state(secret: bool) -> State:
    conn = {"host": "10.0.0.1", "privateKey": "-----BEGIN KEY-----\nabc&<>\n-----END KEY-----\n"}
    res = Resource(urn="urn:x", type="command:remote:Command", name="x", parent_urn=None, custom=True,
                   inputs={"connection": conn, "create": "true"}, outputs={"connection": conn, "stdout": ""},
                   secret_inputs={"connection"} if secret else set(), secret_outputs={"connection"} if secret else set())
    return State(project="p", stack="s", resources=[res])


def test_without_secrets_it_is_the_state_file(tmp_path: Path) -> None:
    state = _state(secret=False)
    save(tmp_path / "s.json", state)
    assert encrypted_bytes(state) == len((tmp_path / "s.json").read_text())


def test_a_secret_is_counted_as_its_sealed_json(tmp_path: Path) -> None:
    state = _state(secret=True)
    save(tmp_path / "s.json", state)
    clear = len((tmp_path / "s.json").read_text())
    conn = state.resources[0].inputs["connection"]
    # Go's json.Marshal: compact, with <, > and & escaped (6 bytes each)
    plain = json.dumps(conn, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    sealed = "v1:" + base64.b64encode(bytes(12)).decode() + ":" + base64.b64encode(bytes(len(plain) + 16)).decode()
    record = {SIG_KEY: SECRET_SIG, "ciphertext": sealed}
    data = copy.deepcopy(state.to_json())  # to_json shares the resources' dicts
    data["resources"][0]["inputs"]["connection"] = record
    data["resources"][0]["outputs"]["connection"] = record
    assert encrypted_bytes(state) == len(json.dumps(data, indent=1)) + 1
    assert encrypted_bytes(state) > clear, "sealing adds the tag, the nonce and base64"


def test_a_secret_inside_a_secret_is_sealed_once() -> None:
    """The backend encrypts the outer value whole; its secret parts are not sealed again."""
    outer = _state(secret=True)
    both = _state(secret=True)
    both.resources[0].secret_inputs = {"connection", "connection.privateKey"}
    both.resources[0].secret_outputs = {"connection", "connection.privateKey"}

    def added(state: State) -> int:  # what sealing adds to the clear file (whose path lists differ)
        return encrypted_bytes(state) - (len(json.dumps(state.to_json(), indent=1)) + 1)

    assert added(both) == added(outer) > 0


def test_as_the_diy_backend_writes_it_the_checkpoint_is_compact(tmp_path: Path) -> None:
    """pulumi pkg/backend/diy/state.go `compactJSONMarshaler`: no indentation, <, > and & as they
    are; sealing still counts the secret's Go-escaped JSON."""
    state = _state(secret=False)
    data = state.to_json()
    # each resource as apitype.ResourceV3: no name, no options object, no secret-path lists,
    # and what is empty or false left out (omitempty); urn, custom and type always
    v3 = [{k: v for k, v in r.items() if k not in ("name", "options", "secretInputs", "secretOutputs") and (v or k in ("custom", "type"))}
          for r in data["resources"]]
    for record, res in zip(v3, state.resources, strict=True):
        record.update({k: v for k, v in res.options.to_json().items() if v and k != "deleteBeforeReplace"})
    assert encrypted_bytes(state, compact=True) == len(json.dumps({**data, "resources": v3}, separators=(",", ":")))
    assert encrypted_bytes(state, compact=True) < encrypted_bytes(state)
    assert "&<>" in json.dumps(data, separators=(",", ":"))  # written as they are
    assert encrypted_bytes(_state(secret=True), compact=True) > encrypted_bytes(state, compact=True)


def test_a_secret_inside_a_list_is_sealed_too() -> None:
    """A secret path with an index (`items[0]`) names a list element: it is sealed like a key's."""
    value = "a-secret-of-some-length-" * 4
    res = Resource(urn="urn:x", type="command:remote:Command", name="x", parent_urn=None, custom=True,
                   inputs={"items": [value, "plain"]}, secret_inputs={"items[0]"})
    clear = Resource(urn="urn:x", type="command:remote:Command", name="x", parent_urn=None, custom=True,
                     inputs={"items": [value, "plain"]})
    sealed, plain = State(resources=[res]), State(resources=[clear])
    # the ciphertext of the JSON string, its tag, the nonce and the marker replace the value
    assert encrypted_bytes(sealed, compact=True) > encrypted_bytes(plain, compact=True) + 60

"""The CA rotation's pieces: `Ca.trusted`/`Ca.issuer`, the resource names and subjects of each
generation, `trust_bundle`, the config errors; and, on Pulumi's mock runtime, what one phase
renders. The phase sequence itself (what each phase changes over the one before) is the replay
engine's: tests/replay/test_ca_rotation_phases.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509

from components.config import Ca, ConfigError, ca_prefix, parse
from components.pki import ca_subject, trust_bundle
from tests.helpers.certs import make_ca, pem
from tests.helpers.program import Program, Secret
from tests.helpers.stack_config import good

EXTRAS = {
    "gitlab": {"enabled": True, "host": "gitlab", "mattermostExternalUrl": "https://mm.gitlab.lab"},
    "teleport": {"enabled": True, "host": "plugin"},
    "teleportToken": Secret("bot-token-abcdefghijklmnop"),
}


def certs(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


# ---------------------------------------------------------------- the pieces (pure)


@pytest.mark.parametrize(
    ("cfg", "issuer", "trusted"),
    [
        ({}, 1, (1,)),
        ({"rotation": "stage"}, 1, (1, 2)),
        ({"rotation": "switch"}, 2, (1, 2)),
        ({"generation": 2}, 2, (2,)),
        ({"generation": 7, "rotation": "stage"}, 7, (7, 8)),
        ({"generation": 7, "rotation": "switch"}, 8, (7, 8)),
    ],
)
def test_phase_plan(cfg: dict[str, Any], issuer: int, trusted: tuple[int, ...]) -> None:
    ca = Ca.model_validate(cfg)
    assert (ca.issuer, ca.trusted) == (issuer, trusted)
    assert ca.issuer in ca.trusted, "a server certificate is always verifiable by every bundle"


def test_resource_names_of_the_first_generation_are_the_ones_stacks_already_have() -> None:
    assert [ca_prefix(g) for g in (1, 2, 10)] == ["pki-ca", "pki-ca2", "pki-ca10"]


def test_subjects_differ_between_generations_and_the_first_keeps_its_own() -> None:
    ca = Ca.model_validate({"commonName": "X", "organization": "Y"})
    assert ca_subject(ca, 1) == {"common_name": "X", "organization": "Y"}
    assert ca_subject(ca, 2) == {"common_name": "X", "organization": "Y", "organizational_unit": "generation 2"}


def _pem(cn: str) -> str:
    return pem(make_ca(cn)[1])


def test_trust_bundle_keeps_order_drops_duplicates_and_is_read_as_two_cas() -> None:
    import ssl

    a, b = _pem("a"), _pem("b")
    bundle = trust_bundle([a.rstrip("\n"), b + "\n\n", a])
    assert bundle == a.strip() + "\n" + b.strip() + "\n"
    assert certs(bundle) == certs(a) + certs(b)
    ctx = ssl.create_default_context(cadata=bundle)
    assert len(ctx.get_ca_certs()) == 2, "Python's cadata (the load, clients) takes both"
    with pytest.raises(ValueError, match="empty"):
        trust_bundle([a, " \n"])


@pytest.mark.parametrize(
    ("ca", "key", "hint"),
    [
        ({"rotation": "finish"}, "ca.rotation", "stage"),
        ({"generation": 0}, "ca.generation", ""),
    ],
)
def test_bad_rotation_config_names_the_key(ca: dict[str, Any], key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse({**good(), "ca": ca})
    assert key in str(err.value) and hint in str(err.value)


def test_every_node_of_a_multi_node_stack_waits_out_nginx_fail_timeout_after_a_tls_restart(
    program: Any, lab_config: dict[str, Any]
) -> None:
    """A renewal and each rotation phase restart every node one after another; each waits
    (node_render._settle) so NGINX never has them all marked failed at once."""
    from components.remote_files_render import read_manifest

    ca = {"commonName": "Mattermost lab transport CA", "organization": "Lab", "rotation": "switch"}
    switch: Program = program({**lab_config, **EXTRAS, "ca": ca})
    assert not switch.program_error, switch.program_error
    for i in (1, 2, 3):
        stdin = switch.get(f"mm{i}-tls-files", "command:remote:Command").inputs["stdin"]
        activate = read_manifest(stdin["value"] if isinstance(stdin, dict) else stdin).sections["activate"]
        assert "was_tls=1" in activate and "sleep 11" in activate, f"mm{i}"

"""A bad config stops the program as the Pulumi CLI prints it: the message naming the key and
the fix, no traceback (and, when the config cannot be read, nothing registered). ConfigError is a plain exception (the config and the
renderers import no Pulumi); __main__.py raises it as a RunError, which the Python language host
prints alone (lab/replay/runtime.py `_describe` does the same)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from lab.replay import Secret, evaluate
from tests.helpers.program import KEY, PROJECT_DIR

PROD = yaml.safe_load((PROJECT_DIR / "stacks" / "Pulumi.prod.yaml").read_text())["config"]
DATABASE = PROD["mattermost-transport-encryption:database"]


@pytest.mark.parametrize(
    ("config", "says"),
    [
        # refused while the config is read (components/config/loading.py)
        ({"nodez": []}, "mattermost-transport-encryption:nodez: unknown key (did you mean 'nodes'?)"),
        # refused while the Deployment is built (components/database.py, the rotation's login)
        ({"database": {**DATABASE, "rotatePassword": True, "user": "u" * 30}}, "mattermost-transport-encryption:database.user: "),
    ],
    ids=["loading", "building"],
)
def test_a_bad_config_stops_the_preview_with_its_message_alone(config: dict[str, Any], says: str) -> None:
    ev = evaluate(PROJECT_DIR, "prod", config={"sshPrivateKey": Secret(KEY), **config}, preview=True, raise_on_error=False)
    assert says in ev.program_error, ev.program_error
    assert "Traceback" not in ev.program_error and "ConfigError" not in ev.program_error, ev.program_error
    if "unknown key" in says:  # read before anything is built
        assert [r for r in ev.resources if r.custom] == []

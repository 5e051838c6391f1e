"""The replay engine: `pulumi up` for this project without the Pulumi CLI.

The CLI and provider plugins cannot be installed on these machines, so the REAL program
(`__main__.py`) runs under the SDK's mock runtime with a monitor of our own, and the engine
does what the Pulumi engine and the three providers would do: pulumi-tls and pulumi-random
with real cryptography, remote.Command over real SSH, state in a JSON file.

Modules (each owns one thing):
- `project`   Pulumi.yaml and stack config, as the CLI hands them to the program
- `runtime`   running the program under mocks; the monitor that captures registrations
- `engine`    step semantics (same/update/replace/delete, order, failures)
- `providers` tls, random and remote.Command emulation
- `runners`   where command text runs: SSH (paramiko) or a local shell for tests
- `state`     the state file
- `props`     wire values, secret paths, masking
- `model`     result types (`Evaluation`, `Resource`, `Step`)
- `report`    what the CLI prints
CLI: `python -m lab.replay up|preview|destroy|outputs`. Library: `evaluate`, `up`, `destroy`.
"""

from lab.replay.api import default_state_path, destroy, evaluate, outputs, preview, run, up
from lab.replay.model import Evaluation, Options, ReplayError, Resource, Step
from lab.replay.project import Secret
from lab.replay.props import UNKNOWN
from lab.replay.state import State

__all__ = [
    "UNKNOWN",
    "Evaluation",
    "Options",
    "ReplayError",
    "Secret",
    "Resource",
    "State",
    "Step",
    "default_state_path",
    "destroy",
    "evaluate",
    "outputs",
    "preview",
    "run",
    "up",
]

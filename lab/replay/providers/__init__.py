"""Emulated providers: what `create`, `update`, `delete` and the diff do for each resource type.

Owns the provider interface and the registry by type token. `tls` and `random` generate real
keys, certificates and passwords with `cryptography`; `command` runs `remote.Command` over real
SSH through a runner (see `lab.replay.runners`).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lab.replay.model import Resource
from lab.replay.props import Redactor

if TYPE_CHECKING:
    from lab.replay.runners import CommandRunner


class StepFailed(Exception):
    """A provider operation failed; the message is what `pulumi up` would show (before masking)."""


@dataclass
class Context:
    """What a provider operation may use besides the resource itself."""

    preview: bool
    now: Callable[[], datetime]
    runner: CommandRunner | None
    redact: Redactor = field(default_factory=Redactor)
    show_secrets: bool = False


class Provider:
    """Default behaviour: every input change replaces, delete does nothing, nothing is secret."""

    type: str = ""
    secret_outputs: frozenset[str] = frozenset()
    """Outputs the provider itself marks secret (independent of the SDK's additionalSecretOutputs)."""
    computed: tuple[str, ...] = ()
    """Outputs the provider computes (unknown in a preview when an input is still unknown)."""

    def check(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Inputs with the provider's defaults filled in (so absent == default in a diff)."""
        return dict(inputs)

    def replace_keys(self, changed: set[str]) -> set[str]:
        """The changed top-level inputs that force a replacement."""
        return set(changed)

    def renewal_due(self, old: Resource, inputs: dict[str, Any], now: datetime) -> bool:
        """True if the resource replaces itself although no input changed (certificate renewal)."""
        return False

    def create(self, ctx: Context, res: Resource, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def update(self, ctx: Context, old: Resource, res: Resource, inputs: dict[str, Any]) -> dict[str, Any]:
        """In-place update; the default keeps the old outputs with the new inputs."""
        return {**old.outputs, **inputs}

    def delete(self, ctx: Context, old: Resource) -> None:
        return None


class ExplicitProvider(Provider):
    """`pulumi:providers:*` resources (explicit provider instances): recorded, nothing to do."""

    def create(self, ctx: Context, res: Resource, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return secrets.token_hex(8), dict(inputs)


@functools.cache
def registry() -> dict[str, Provider]:
    from lab.replay.providers import command, random, tls

    out: dict[str, Provider] = {}
    for module in (tls, random, command):
        for provider in module.PROVIDERS:
            out[provider.type] = provider
    return out


def lookup(type_: str) -> Provider | None:
    """The emulation for a resource type token, or None if the replay engine has none."""
    if type_.startswith("pulumi:providers:"):
        return ExplicitProvider()
    return registry().get(type_)

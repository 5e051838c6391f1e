"""pulumi-random emulation (RandomPassword, RandomString).

Owns generating the values the way terraform-provider-random does: `min_*` characters from
each class first, the rest from the union of enabled classes, then a random shuffle, all from
the OS CSPRNG. `result` (and `bcrypt_hash`) of a RandomPassword are secret. Any input change,
`keepers` included, replaces the resource (a new value).
"""

from __future__ import annotations

import secrets
from typing import Any

from lab.replay.model import Resource
from lab.replay.providers import Context, Provider, StepFailed

LOWER = "abcdefghijklmnopqrstuvwxyz"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
NUMERIC = "0123456789"
SPECIAL = "!@#$%&*()-_=+[]{}<>:?"


def generate(inputs: dict[str, Any]) -> str:
    """A random string following the provider's algorithm (inputs are checked ones)."""
    length = int(inputs["length"])
    special = str(inputs.get("overrideSpecial") or SPECIAL)
    classes = [
        (bool(inputs["upper"]), UPPER, int(inputs["minUpper"])),
        (bool(inputs["lower"]), LOWER, int(inputs["minLower"])),
        (bool(inputs["numeric"]), NUMERIC, int(inputs["minNumeric"])),
        (bool(inputs["special"]), special, int(inputs["minSpecial"])),
    ]
    if length < 1:
        raise StepFailed("length: must be at least 1")
    minimum = sum(m for _, _, m in classes)
    if minimum > length:
        raise StepFailed(f"length ({length}) must be at least the sum of the min_* values ({minimum})")
    pool = "".join(chars for enabled, chars, _ in classes if enabled)
    if not pool and length > minimum:
        raise StepFailed("at least one of upper, lower, numeric or special must be true")
    out = [secrets.choice(chars) for _, chars, m in classes for _ in range(m)]
    out += [secrets.choice(pool) for _ in range(length - minimum)]
    # A random permutation, so the guaranteed characters do not sit at fixed positions.
    return "".join(secrets.SystemRandom().sample(out, len(out)))


class RandomString(Provider):
    type = "random:index/randomString:RandomString"
    computed: tuple[str, ...] = ("result",)

    def check(self, inputs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "special": True,
            "upper": True,
            "lower": True,
            "minUpper": 0.0,
            "minLower": 0.0,
            "minNumeric": 0.0,
            "minSpecial": 0.0,
            **inputs,
        }
        # `number` is the deprecated spelling of `numeric`; the provider keeps both equal.
        numeric = inputs.get("numeric", inputs.get("number", True))
        out["numeric"] = out["number"] = numeric
        return out

    def create(self, ctx: Context, res: Resource, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        result = generate(inputs)
        return result, {**inputs, "result": result}


class RandomPassword(RandomString):
    type = "random:index/randomPassword:RandomPassword"
    secret_outputs = frozenset({"result", "bcryptHash"})
    computed = ("result", "bcryptHash")

    def create(self, ctx: Context, res: Resource, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        result = generate(inputs)
        outputs: dict[str, Any] = {**inputs, "result": result}
        try:
            import bcrypt

            # Go's bcrypt.DefaultCost and "$2a$" prefix, as the provider stores it.
            outputs["bcryptHash"] = bcrypt.hashpw(result.encode(), bcrypt.gensalt(10, prefix=b"2a")).decode()
        except (ImportError, ValueError):
            # Optional output: bcrypt (a paramiko dependency) may be missing, and it refuses
            # passwords longer than 72 bytes.
            pass
        return "none", outputs


PROVIDERS: list[Provider] = [RandomPassword(), RandomString()]

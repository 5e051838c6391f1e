"""Write the host helper's library: the texts every host gets alike, kept once in the helper file.

pulumi-command stores a command's stdin twice (its inputs, and its outputs that embed them), for
every command on every node. What is the same on every host (the cluster's program, hooks,
units, the bodies of the preflight scripts below their parameters) goes into the library at the
end of components/scripts/mmtls-helper.sh, which travels as a file asset that the state holds as
a hash; an input's section then names the entry (`lib=ID`) after its own lines
(components/remote_files_render.py `_section`).

What is the same: the program is evaluated (a replay preview, nothing runs) for sample stacks,
each twice, with other node names, addresses, keys and cluster settings; for every section of
every non-secret helper input, the longest run of whole lines at its end that all of them share
(at least LIBRARY_MIN bytes) is an entry. A text that a stack's own values change is simply not
in the library: it travels in full, as before.

    venv/bin/python -m tools.helper_library            # append the missing entries to the helper
    venv/bin/python -m tools.helper_library --check    # exit 1 naming what is missing

Entries are only appended, never removed or changed: a delete command stored in a stack's state
names the entries its input used, and must find them in every later helper.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _pub() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _private() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        .decode()
    )


RUNS = [
    # (node names, address prefix, cluster overrides)
    (["mm1", "mm2", "mm3"], "10.20.0.", {"name": "mattermost-prod", "tunnelPortBase": 28000}),
    (["app-a", "app-b", "app-c", "app-d"], "172.16.9.", {"name": "chat", "tunnelPortBase": 31000}),
]
VARIANTS: list[dict[str, Any]] = [
    {},  # stacks/Pulumi.prod.yaml: MySQL, Mattermost v10
    {"database": {"engine": "postgres", "address": "10.20.9.1"}, "mattermost": {"version": "11.1.0"}},
]


def sample_config(variant: dict[str, Any], names: list[str], prefix: str, cluster: dict[str, Any]) -> dict[str, Any]:
    from lab.replay import Secret

    nodes = [{"name": n, "address": f"{prefix}{i + 11}", "ssh": {"hostKey": _pub()}} for i, n in enumerate(names)]
    config: dict[str, Any] = {
        "sshPrivateKey": Secret(_private()),
        "nodes": nodes,
        "cluster": {"enabled": True, **cluster},
        "proxy": {"address": f"{prefix}5", "serverName": "chat.example.org", "ssh": {"hostKey": _pub()}},
    }
    for key, value in variant.items():
        config[key] = {**value, "ssh": {"hostKey": _pub()}} if key == "database" else value
    if "database" not in variant:
        config["database"] = {
            "engine": "mysql",
            "address": f"{prefix}4",
            "service": "mysql",
            "configDir": "/etc/mysql/mysql.conf.d",
            "ssh": {"hostKey": _pub()},
        }
    return config


def _sections(names: list[str], prefix: str, state: dict[str, Any]) -> dict[str, str]:
    """(generic resource name, section) -> text, for every non-secret helper input in `state`."""
    from components.remote_files_render import read_manifest

    out: dict[str, str] = {}
    generic = re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + "|" + re.escape(prefix) + r"\d+")
    resources = state.get("deployment", state)["resources"]
    for r in resources:
        stdin = (r.get("inputs") or {}).get("stdin")
        if not isinstance(stdin, str):
            continue
        try:
            manifest = read_manifest(stdin)
        except ValueError:  # a read-only script, or unknown in a preview
            continue
        name = generic.sub("N", r["urn"].split("::")[-1])
        secret = "stdin" in r.get("secretInputs", [])
        for section, text in manifest.sections.items():
            # of a secret input only its scripts: its contents and script input are what is
            # secret (and a text both runs share holds none of their independently made secrets)
            if section != "input" and not (secret and section not in SCRIPTS):
                out[f"{name} {section}"] = text
    return out


SCRIPTS = ("validate", "activate", "restore-activate", "create", "update", "delete")
"""The sections of a helper input that are scripts the program wrote (hooks, run scripts)."""


def _common_tail(texts: list[str]) -> str:
    """The longest run of whole lines that ends every text."""
    lines = [(t if t.endswith("\n") else t + "\n").split("\n")[:-1] for t in texts]
    n = 0
    while all(len(x) > n for x in lines) and len({x[len(x) - 1 - n] for x in lines}) == 1:
        n += 1
    return "".join(line + "\n" for line in lines[0][len(lines[0]) - n :]) if n else ""


def collect() -> list[str]:
    """The texts the library should hold, in a stable order."""
    from components.host_helper_render import LIBRARY_MIN
    from lab.replay import Secret, evaluate
    from lab.replay.runners import SilentRunner

    found: list[str] = []
    for variant in VARIANTS:
        groups: dict[str, list[str]] = defaultdict(list)
        seen: dict[str, set[int]] = defaultdict(set)  # which of RUNS sent each group
        for run, (names, prefix, cluster) in enumerate(RUNS):
            config = sample_config(variant, names, prefix, cluster)
            # a preview (the database password read from the hosts) and a fresh up (the password
            # given; every input known, a node's TLS files too)
            evaluations = [evaluate(ROOT, "prod", config=config)]
            if variant.get("database", {}).get("engine") == "postgres":  # MySQL's account read needs a host's answer
                applied = evaluate(
                    ROOT, "prod", config={**config, "dbPassword": Secret(_private()[40:72])}, preview=False, runner=SilentRunner()
                )
                assert not applied.failed_steps, applied.failed_steps[0].error
                evaluations.append(applied)
            for ev in evaluations:
                for key, text in _sections(names, prefix, ev.state.to_json()).items():
                    groups[key].append(text)
                    seen[key].add(run)
        for key in sorted(groups):
            if len(seen[key]) < len(RUNS):  # not sent by every run: nothing to compare it with
                continue
            tail = _common_tail(groups[key])
            if len(tail.encode()) >= LIBRARY_MIN and tail not in found:
                found.append(tail)
    return found


def missing(wanted: list[str]) -> list[str]:
    from components.host_helper_render import helper_library

    have = set(helper_library().values())
    return [t for t in wanted if t not in have]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if an entry is missing; change nothing")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from components.host_helper_render import HELPER_SOURCE, library_entry

    new = missing(collect())
    if args.check:
        for text in new:
            print(f"missing library entry ({len(text.encode())} bytes): {text.splitlines()[0][:100]}")
        if new:
            print("run: venv/bin/python -m tools.helper_library")
        return 1 if new else 0
    text = HELPER_SOURCE.read_text()
    HELPER_SOURCE.write_text(text + "".join(library_entry(t) for t in new))
    print(f"{len(new)} entries appended to {HELPER_SOURCE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

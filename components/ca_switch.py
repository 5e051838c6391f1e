"""The `ca.rotation: switch` guard: read-only checks that every trust file the stack manages
already holds the new CA before any server certificate comes from it.

`switch` re-issues every server certificate from CA generation N+1. That loses no request only
if the `stage` phase ran first and finished: every verifier (NGINX for the nodes, the nodes for
the database, GitLab, the Teleport plugin) trusts N+1 before any server presents a certificate
from it. A preview cannot see the previous phase (the program has no access to its last state),
but the hosts can: one read-only check per host, among the checks everything waits for
(`preflights-passed`), looks for the new CA in each trust file. A `switch` whose `stage` was
never applied, or did not finish on some host, stops there, before any host changes, naming the
config key and the fix. Outside `switch` nothing is created.

Which files (components/adapter.py trust_hosts builds the list from the config, with each host's
connection): exactly those the components install the trust bundle into (same path helpers):
the node's CA file (DSN's sslrootcert) and system-store copy, NGINX's
proxy_ssl_trusted_certificate, the database server's and each replica's CA file, GitLab's
trusted-certs file and the Teleport plugin's CA file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.pki import Pki
from components.remote_files import read_script
from components.shell import script


@dataclass(frozen=True)
class TrustHost:
    """One host's trust files, as the stack installs them (components/adapter.py trust_hosts)."""

    label: str
    """Stable identity for the check's resource name (node name, proxy, database, ...)."""
    connection: remote.ConnectionArgs
    files: tuple[str, ...]


@dataclass(frozen=True)
class CaSwitchArgs:
    """Inputs of the `switch` checks (components/adapter.py ca_switch_args builds them)."""

    generation: int
    """The CA generation that issues during `switch` (ca.generation + 1)."""
    hosts: Sequence[TrustHost]
    """Every host holding a trust file, in config order."""
    pki: Pki


def pem_body(pem: str) -> str:
    """A certificate's base64 body without its armour and whitespace: what the check looks for
    in a trust file with its whitespace removed (so line lengths and CRLF do not matter)."""
    lines = [ln.strip() for ln in pem.strip().splitlines()]
    if len(lines) < 3 or not lines[0].startswith("-----BEGIN ") or not lines[-1].startswith("-----END "):
        raise ValueError("not one PEM certificate")
    if any(ln.startswith("-----") for ln in lines[1:-1]):
        raise ValueError("more than one PEM block: pass the new CA's certificate alone")
    return "".join(lines[1:-1])


def render_switch_check(*, host: str, generation: int, new_ca_pem: str, files: Sequence[str]) -> str:
    """The read-only check on one host: exit 1, naming `ca.rotation` and the fix, unless every
    file in `files` exists and holds the certificate `new_ca_pem` (CA `generation`).
    The script: templates/ca-switch-check.sh."""
    if not files:
        raise ValueError("no trust file to check")
    return script(
        "ca-switch-check.sh",
        host=host,
        generation=int(generation),
        expected=pem_body(new_ca_pem),
        files="\n".join(files),
    )




def ca_switch_preflights(args: CaSwitchArgs, opts: pulumi.ResourceOptions | None = None) -> list[pulumi.Resource]:
    """`ca-switch-check-<host>` for every trust host (built only during `ca.rotation: switch`).
    Everything that changes a host must wait for them (the deployment puts them among the preflights)."""
    new_ca = args.pki.ca_cert_of(args.generation)
    checks: list[pulumi.Resource] = []
    for h in args.hosts:

        def script(pem: str, h: TrustHost = h) -> str:
            return render_switch_check(host=h.label, generation=args.generation, new_ca_pem=pem, files=h.files)

        checks.append(
            read_script(f"ca-switch-check-{h.label}", connection=h.connection, script=new_ca.apply(script), opts=opts)
        )
    return checks

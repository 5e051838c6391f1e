"""TlsEnforcement: a database's second rollout step, its own component. Phase 1 (the Database or
DatabaseReplica component: TLS offered, plain logins still let in) comes before the nodes; this
one, after the clients, refuses plain logins (components/database.py `enforce_tls`,
`enforce_gitlab_tls`; components/db_replicas.py `enforce_tls`). So every component registers its
outputs once, at the end of its constructor. The resources keep their names and, through an
alias (`moved_child`), the place they had as the database component's children: existing stacks
move them instead of replacing them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pulumi


def moved_child(component: pulumi.Resource, parent: pulumi.Resource | None) -> pulumi.ResourceOptions:
    """Options of a phase-2 resource: a child of `parent` when its step has its own component,
    aliased to the place it had as `component`'s child; else `component`'s child, as before."""
    if parent is None or parent is component:
        return pulumi.ResourceOptions(parent=component)
    return pulumi.ResourceOptions(parent=parent, aliases=[pulumi.Alias(parent=component)])


@dataclass(frozen=True)
class TlsEnforcementArgs:
    """Inputs of one enforcement step."""

    enforce: Callable[[pulumi.Resource], list[pulumi.Resource]]
    """Builds the step's resources under the parent it is given, e.g.
    `partial(database.enforce_tls, after)` (the clients it waits for are in `after`)."""


class TlsEnforcement(pulumi.ComponentResource):
    """Plain logins refused on one database server for one role (see the module docstring);
    build it with the database component as `parent`."""

    enforced: list[pulumi.Resource]
    """The step's resources (a destroy deletes them before phase 1's)."""

    def __init__(self, name: str, args: TlsEnforcementArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mattermost-tls:database_enforcement:TlsEnforcement", name, None, opts)
        self.enforced = args.enforce(self)
        self.register_outputs({})

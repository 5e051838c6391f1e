"""Data the replay engine records: resources as registered, the steps taken, the evaluation.

Owns the public result types (`Resource`, `Options`, `Step`, `Evaluation`) and their JSON form,
which is also the state file's per-resource record. No behaviour beyond lookups lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from lab.replay import props

COMMAND_TYPE = "command:remote:Command"
STACK_TYPE = "pulumi:pulumi:Stack"


class ReplayError(Exception):
    """The program, its config or the state cannot be replayed (not a failed step)."""


@dataclass
class Options:
    """The resource options the engine acts on, as the SDK sent them (camelCase paths)."""

    delete_before_replace: bool = False
    additional_secret_outputs: list[str] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)
    retain_on_delete: bool = False
    protect: bool = False

    # the JSON form (the state file's and the SDK's names): each field under its camelCase name
    def to_json(self) -> dict[str, Any]:
        return {_camel(f.name): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Options:
        return cls(
            delete_before_replace=bool(data.get("deleteBeforeReplace", False)),
            additional_secret_outputs=list(data.get("additionalSecretOutputs", [])),
            replace_on_changes=list(data.get("replaceOnChanges", [])),
            ignore_changes=list(data.get("ignoreChanges", [])),
            retain_on_delete=bool(data.get("retainOnDelete", False)),
            protect=bool(data.get("protect", False)),
        )


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


@dataclass
class Resource:
    """One registered resource: what the program asked for and what it got back."""

    urn: str
    type: str
    name: str
    parent_urn: str | None
    custom: bool
    dependencies: list[str] = field(default_factory=list)
    """URNs from the request's `dependencies` (depends_on and every Output used as input)."""
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    options: Options = field(default_factory=Options)
    inputs: dict[str, Any] = field(default_factory=dict)
    """Plain input values (camelCase keys, numbers as floats, `props.UNKNOWN` where unknown)."""
    secret_inputs: set[str] = field(default_factory=set)
    """Paths of inputs that arrived secret (`connection`, `stdin`, ...)."""
    aliases: list[str] = field(default_factory=list)
    """The URNs this resource may have had before (its `aliases` option, and its parent's, as
    the engine computes them: ReplayMonitor.alias_urns). Not kept in the state."""
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    id: str | None = None
    provider: str = ""
    """A custom resource's provider reference, as the engine stores it: its default provider's
    URN and ID (`urn:...::pulumi:providers:<package>::default_<version>::<id>`)."""
    created: str = ""
    modified: str = ""
    """When the engine created, and last changed, the resource (RFC 3339 with nanoseconds, as Go
    writes a time.Time; pulumi pkg/resource/deploy/step.go: Create sets both, Update `Modified`,
    Same keeps both)."""
    source_position: str = ""
    stack_trace: list[str] = field(default_factory=list)
    """Where the program registered it and the stack it did so from, one position per frame
    ("" where the SDK sent none), as the engine stores them in the state: the SDK sends both with
    every registration (pulumi/runtime/resource.py `_get_stack_trace`), the engine keeps them
    relative to the project (pkg/resource/deploy/source_eval.go `sourcePositions`) and writes
    them in each resource's record (pkg/resource/stack/deployment.go `SerializeResource`)."""
    status: str = "pending"
    """same | create | update | replace | failed | skipped (custom); create | same (component)."""

    def all_dependencies(self) -> set[str]:
        """Every URN this resource must outlive: dependencies, property dependencies, parent."""
        deps = set(self.dependencies)
        for urns in self.property_dependencies.values():
            deps.update(urns)
        if self.parent_urn:
            deps.add(self.parent_urn)
        return deps

    def command_texts(self) -> list[str]:
        """create/update/delete strings of a remote.Command (empty for other types)."""
        if self.type != COMMAND_TYPE:
            return []
        return [v for k in ("create", "update", "delete") if isinstance(v := self.inputs.get(k), str)]

    def is_secret_input(self, path: str) -> bool:
        """True if `path` or an enclosing value was sent secret."""
        return any(path == s or path.startswith(s + ".") or path.startswith(s + "[") for s in self.secret_inputs)

    def is_secret_output(self, path: str) -> bool:
        return any(path == s or path.startswith(s + ".") or path.startswith(s + "[") for s in self.secret_outputs)

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent_urn,
            "custom": self.custom,
            "id": self.id,
            "dependencies": self.dependencies,
            "propertyDependencies": self.property_dependencies,
            "options": self.options.to_json(),
            "inputs": self.inputs,
            "secretInputs": sorted(self.secret_inputs),
            "outputs": self.outputs,
            "secretOutputs": sorted(self.secret_outputs),
            # apitype.ResourceV3's omitempty fields: only when set
            **({"provider": self.provider} if self.provider else {}),
            **({"created": self.created} if self.created else {}),
            **({"modified": self.modified} if self.modified else {}),
            **({"sourcePosition": self.source_position} if self.source_position else {}),
            **({"stackTrace": [{"sourcePosition": f} if f else {} for f in self.stack_trace]} if self.stack_trace else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Resource:
        return cls(
            urn=data["urn"],
            type=data["type"],
            name=data["name"],
            parent_urn=data.get("parent"),
            custom=bool(data.get("custom", True)),
            id=data.get("id"),
            dependencies=list(data.get("dependencies", [])),
            property_dependencies={k: list(v) for k, v in data.get("propertyDependencies", {}).items()},
            options=Options.from_json(data.get("options", {})),
            inputs=data.get("inputs", {}),
            secret_inputs=set(data.get("secretInputs", [])),
            outputs=data.get("outputs", {}),
            secret_outputs=set(data.get("secretOutputs", [])),
            provider=data.get("provider", ""),
            created=data.get("created", ""),
            modified=data.get("modified", ""),
            source_position=data.get("sourcePosition", ""),
            stack_trace=[f.get("sourcePosition", "") for f in data.get("stackTrace", [])],
            status="same",
        )


@dataclass
class Step:
    """One engine operation (or planned operation, in a preview)."""

    op: str
    """create | update | replace | delete | delete-replaced | same"""
    urn: str
    type: str
    name: str
    result: str = "ok"
    """ok | failed | skipped | planned"""
    duration: float = 0.0
    changed: list[str] = field(default_factory=list)
    """Top-level input keys that differ (update/replace), or the reason (`ready_for_renewal`)."""
    error: str = ""
    texts: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Changed plain string inputs, old and new (what `pulumi preview --diff` shows); never a
    secret one."""

    SYMBOLS = {"create": "+", "update": "~", "replace": "+-", "delete": "-", "delete-replaced": "--", "same": " "}

    @property
    def symbol(self) -> str:
        return self.SYMBOLS.get(self.op, "?")


@dataclass
class Evaluation:
    """The outcome of running the program once (preview or up) or of a destroy."""

    project: str
    stack: str
    preview: bool
    resources: list[Resource] = field(default_factory=list)
    """In registration order (a resource registers only after its dependencies)."""
    outputs: dict[str, Any] = field(default_factory=dict)
    """Stack exports (plain values; `props.UNKNOWN` where unknown in a preview)."""
    secret_outputs: set[str] = field(default_factory=set)
    steps: list[Step] = field(default_factory=list)
    program_error: str = ""
    ssh_connections: int = 0
    ssh_sessions: int = 0
    duration: float = 0.0
    state: Any = None
    """The resulting `lab.replay.state.State` (not written anywhere by a preview)."""

    @property
    def ok(self) -> bool:
        return not self.program_error and not any(s.result == "failed" for s in self.steps)

    @property
    def failed_steps(self) -> list[Step]:
        return [s for s in self.steps if s.result == "failed"]

    def by_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def get(self, name: str, type_: str | None = None) -> Resource:
        """The one resource with this name (and type); KeyError if none or several."""
        found = [r for r in self.resources if r.name == name and (type_ is None or r.type == type_)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r}" + (f" of type {type_}" if type_ else ""))
        return found[0]

    def by_urn(self, urn: str) -> Resource:
        for r in self.resources:
            if r.urn == urn:
                return r
        raise KeyError(urn)

    def children(self, parent: Resource) -> list[Resource]:
        return [r for r in self.resources if r.parent_urn == parent.urn]

    def descendants(self, parent: Resource) -> list[Resource]:
        out: list[Resource] = []
        todo = [parent.urn]
        while todo:
            urn = todo.pop()
            for r in self.resources:
                if r.parent_urn == urn:
                    out.append(r)
                    todo.append(r.urn)
        return out

    def commands(self) -> list[Resource]:
        return self.by_type(COMMAND_TYPE)

    def commands_containing(self, text: str) -> list[Resource]:
        """remote.Commands whose create/update/delete text contains `text`."""
        return [r for r in self.commands() if any(text in t for t in r.command_texts())]

    def any_command_contains(self, text: str) -> bool:
        return bool(self.commands_containing(text))

    def counts(self) -> dict[str, int]:
        """Step counts by op, as in the `pulumi up` summary."""
        out: dict[str, int] = {}
        for s in self.steps:
            if s.result in ("ok", "planned"):
                out[s.op] = out.get(s.op, 0) + 1
        return out

    def output_is_known(self, name: str) -> bool:
        return not props.contains_unknown(self.outputs.get(name))

"""Running the real program under Pulumi's mock runtime.

Owns `ReplayMonitor` (a `MockMonitor` that builds URNs like the engine, turns every
RegisterResource request into a `Resource` with its dependencies, options and secret input
paths, and hands it to the `Engine`) and `run_program`, which runs `__main__.py` the way the
Python language host does (`run_in_stack`, cwd = project dir, config set) on a fresh thread
with its own event loop, so evaluations in one process do not share SDK state.
"""

from __future__ import annotations

import asyncio
import os
import runpy
import sys
import threading
import traceback
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime import mocks, settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.stack import run_in_stack

from lab.replay import props
from lab.replay.engine import Engine
from lab.replay.model import STACK_TYPE, Options, ReplayError, Resource
from lab.replay.project import Project

# CPython 3.11's traceback module calls ast.parse to place error carets, and 3.11's AST
# recursion-depth bookkeeping is shared between threads: the SDK and this runtime format
# tracebacks on worker threads while pytest parses source on the main thread, and one of them
# fails with "SystemError: AST constructor recursion depth mismatch" (seen as a pytest
# INTERNALERROR). Carets are cosmetic; without them tracebacks never touch the AST.
if sys.version_info < (3, 12) and hasattr(traceback, "_extract_caret_anchors_from_line_segment"):
    traceback._extract_caret_anchors_from_line_segment = lambda *args, **kwargs: None  # type: ignore[attr-defined]

# One program at a time per process: cwd, sys.path and sys.modules are process-wide.
_PROGRAM_LOCK = threading.Lock()


class _NoMocks(mocks.Mocks):
    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        raise ReplayError("ReplayMonitor handles resources itself")

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        raise ReplayError(f"the replay engine does not emulate provider functions (invoke {args.token})")


def project_position(raw: Any, root: str) -> str:
    """A source position as the engine stores it: `project:///<path relative to the project
    root>#<line>[,<column>]`, "" for none or one it cannot parse (pulumi
    pkg/resource/deploy/source_eval.go `sourcePositions.parseSourcePosition`: file URIs with
    absolute paths only, `filepath.Rel` to the root, so a file outside it reads `../..`)."""
    if raw is None or not raw.uri:
        return ""
    url = urllib.parse.urlsplit(raw.uri)
    path = urllib.parse.unquote(url.path)
    if url.scheme != "file" or not path.startswith("/") or raw.line < 0 or raw.column < 0:
        return ""
    where = f"{raw.line}" + (f",{raw.column}" if raw.column else "")
    return f"project:///{urllib.parse.quote(os.path.relpath(path, root))}#{where}"


def stack_urn(project: str, stack: str) -> str:
    return f"urn:pulumi:{stack}::{project}::{STACK_TYPE}::{project}-{stack}"


class ReplayMonitor(mocks.MockMonitor):
    """The resource monitor the SDK talks to; every decision is the engine's."""

    def __init__(
        self, engine: Engine, project: str, stack: str, root: Path | None = None, launcher: list[tuple[str, int]] | None = None
    ) -> None:
        super().__init__(_NoMocks())
        self.engine = engine
        self.project = project
        self.stack = stack
        self.stack_urn = stack_urn(project, stack)
        self.root = str(root) if root is not None else "/"
        self.launcher = launcher or []
        """(file, line) of the frames that start this replay's program thread, outermost first:
        a real language host has none of them (see `_run`), so a stack that ends in them is
        stored without them."""

    def stack_frames(self, request: Any) -> list[str]:
        """The stack the engine stores for a registration (`project_position` of each frame), as
        the real language host's would read: its bottom frames are the program thread's start
        (threading's bootstrap and run_program's `target`), which `pulumi-language-python-exec`
        does not have (it runs the loop in its main thread at module level:
        sdk/python/cmd/pulumi-language-python-exec, `loop.run_until_complete(coro)`)."""
        frames = list(request.stackTrace.frames)
        n = len(self.launcher)
        if n and len(frames) > n and all(
            f.HasField("pc") and (urllib.parse.unquote(urllib.parse.urlsplit(f.pc.uri).path), f.pc.line) == want
            for f, want in zip(frames[-n:], reversed(self.launcher), strict=True)
        ):
            frames = frames[:-n]
        return [project_position(f.pc if f.HasField("pc") else None, self.root) for f in frames]

    def default_provider(self, type_: str, version: str) -> str:
        """The reference to the default provider of `type_`'s package, as the engine stores it:
        `<provider URN>::<ID>` (sdk/go/common/providers/reference.go `Reference.String`), the URN
        named `default_<major>_<minor>_<patch>` (pkg/resource/deploy/providers/provider.go
        `ProviderRequest.DefaultName`; the packages here set no download URL), the ID a UUID the
        engine made when it created the provider (here derived from the URN: the same on every
        run, as the engine keeps it once made)."""
        package = type_.split(":", 1)[0]
        name = "default_" + version.replace(".", "_") if version else "default"
        urn = f"urn:pulumi:{self.stack}::{self.project}::pulumi:providers:{package}::{name}"
        return f"{urn}::{uuid.uuid5(uuid.NAMESPACE_URL, urn)}"

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """The engine's URN: parent type chain, without the root Stack's type."""
        if type_ == STACK_TYPE:
            return self.stack_urn
        chain = type_
        if parent and parent != self.stack_urn:
            chain = parent.split("::")[2] + "$" + type_
        return f"urn:pulumi:{self.stack}::{self.project}::{chain}::{name}"

    def _urn(self, stack: str, project: str, parent: str, type_: str, name: str) -> str:
        """resource.CreateURN: the parent's type chain unless the parent is none or the root Stack."""
        chain = type_
        if parent and parent.split("::")[2] != STACK_TYPE:
            chain = parent.split("::")[2] + "$" + type_
        return f"urn:pulumi:{stack}::{project}::{chain}::{name}"

    def alias_urns(self, request: Any) -> list[str]:
        """The URNs a registration's aliases stand for, as the engine computes them
        (pkg/resource/deploy/step_generator.go `generateAliases`, `collapseAliasToUrn`,
        `inheritedChildAlias`). The SDK sends specs: MockMonitor supports "aliasSpecs"."""
        found: list[str] = []

        def add(urn: str) -> None:
            if urn not in found:
                found.append(urn)

        parent = request.parent or ""
        parent_alias = self.engine.alias_of(parent) if parent else None
        for alias in request.aliases:
            if alias.WhichOneof("alias") == "urn":
                urns = [alias.urn]
            else:
                spec = alias.spec
                # only a NAMED parent is taken at its old URN (`collapseAliasToUrn`); an alias
                # without one stays under the new parent, and the parent's alias reaches it
                # through `inheritedChildAlias` below (with its name-prefix swap), as in the engine
                alias_parent = (self.engine.alias_of(spec.parentUrn) or spec.parentUrn) if spec.parentUrn else parent
                if spec.noParent:
                    alias_parent = ""
                urns = [self._urn(spec.stack or self.stack, spec.project or self.project, alias_parent,
                                  spec.type or request.type, spec.name or request.name)]
            for urn in urns:
                add(urn)
                if parent_alias:  # multiplied out by the parent's alias, as the engine does
                    add(self._inherited(urn.split("::")[2].rsplit("$", 1)[-1], urn.rsplit("::", 1)[1], parent, parent_alias))
        if parent_alias:
            add(self._inherited(request.type, request.name, parent, parent_alias))
        return found

    def _inherited(self, type_: str, name: str, parent: str, parent_alias: str) -> str:
        """step_generator.go `inheritedChildAlias`: the child under its parent's old URN, its name's
        parent-name prefix swapped for the old one."""
        parent_name, old_name = parent.rsplit("::", 1)[1], parent_alias.rsplit("::", 1)[1]
        alias_name = old_name + name[len(parent_name):] if name.startswith(parent_name) else name
        return self._urn(self.stack, self.project, parent_alias, type_, alias_name)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == STACK_TYPE:
            return resource_pb2.RegisterResourceResponse(urn=urn)
        if request.remote:
            raise ReplayError(f"{request.type} {request.name}: remote (multi-language) components are not supported")
        inputs, secret_paths = props.decode_struct(request.object)
        inputs = props.with_asset_hashes(inputs, os.getcwd())
        res = Resource(
            urn=urn,
            type=request.type,
            name=request.name,
            parent_urn=request.parent or None,
            custom=bool(request.custom),
            dependencies=list(request.dependencies),
            property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
            options=Options(
                delete_before_replace=bool(request.deleteBeforeReplace),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                replace_on_changes=list(request.replaceOnChanges),
                ignore_changes=list(request.ignoreChanges),
                retain_on_delete=bool(request.retainOnDelete),
                protect=bool(request.protect),
            ),
            inputs=inputs,
            secret_inputs=secret_paths,
            aliases=self.alias_urns(request),
            provider=self.default_provider(request.type, request.version) if request.custom else "",
            source_position=project_position(request.sourcePosition if request.HasField("sourcePosition") else None, self.root),
            stack_trace=self.stack_frames(request),
        )
        self.engine.register(res)
        if res.status in ("failed", "skipped"):
            return resource_pb2.RegisterResourceResponse(
                urn=urn, id="", object=struct_pb2.Struct(), result=resource_pb2.Result.FAIL
            )
        outputs = {k: v for k, v in res.outputs.items() if k != "id"}
        # What MockMonitor's getResource invoke reads when the SDK rehydrates a resource reference.
        self.resources[urn] = mocks.MockMonitor.ResourceRegistration(urn, res.id or "", outputs)
        return resource_pb2.RegisterResourceResponse(
            urn=urn, id=res.id or "", object=props.encode_struct(outputs, res.secret_outputs)
        )

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        outputs, secret_paths = props.decode_struct(request.outputs)
        self.engine.set_outputs(request.urn, outputs, secret_paths, self.stack_urn)
        return empty_pb2.Empty()

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        raise ReplayError(f"{request.type} {request.name}: reading existing resources (.get) is not supported")


class _Placeholder:
    """Stands in as root resource while set_mocks runs, so it does not register a Stack of its own."""


def run_program(
    project: Project, stack: str, config: dict[str, str], engine: Engine, preview: bool, secrets: list[str] | None = None
) -> str:
    """Run the program to completion; '' on success, else the error as the CLI would print it."""
    outcome: dict[str, str] = {}

    def target() -> None:
        try:
            _run(project, stack, config, engine, preview, secrets or [])
        except BaseException as exc:  # noqa: BLE001 - reported to the caller as the program's error
            outcome["error"] = _describe(exc, project.root)

    with _PROGRAM_LOCK:
        thread = threading.Thread(target=target, name=f"replay-{stack}")
        thread.start()
        try:
            thread.join()
        except KeyboardInterrupt:
            engine.cancel()
            thread.join()
            raise
    return outcome.get("error", "")


def _run(
    project: Project, stack: str, config: dict[str, str], engine: Engine, preview: bool, secrets: list[str]
) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # Spare threads beyond `parallel` so components and waiting steps never starve running ones.
    executor = ThreadPoolExecutor(max_workers=engine.parallel + 8, thread_name_prefix="replay-sdk")
    loop.set_default_executor(executor)
    # this frame stands for the language host's module level; the ones below it start the thread
    launcher = [(f.filename, f.lineno or 0) for f in traceback.extract_stack()[:-1]]
    monitor = ReplayMonitor(engine, project.name, stack, project.root, launcher)
    settings.ROOT.set(_Placeholder())  # type: ignore[arg-type]
    mocks.set_mocks(_NoMocks(), project=project.name, stack=stack, preview=preview, monitor=monitor)
    settings.ROOT.set(None)
    # This program's own set of pending outputs, as a fresh Settings gives each run of the
    # Automation API's in-process server (pulumi/automation/_server.py Run -> reset_options).
    # MockSettings (pulumi/runtime/mocks.py) keeps the process-wide set, where a failed earlier
    # program's outputs stay and wait_for_rpcs (runtime/stack.py) would re-raise their error here.
    settings.SETTINGS.outputs = set()
    settings.SETTINGS.root_directory = str(project.root)
    set_all_config(config, secrets)
    cwd, path, modules = os.getcwd(), list(sys.path), set(sys.modules)
    os.chdir(project.root)
    sys.path.insert(0, str(project.root))
    main = str(project.main)

    def run() -> None:
        # as the language host's `run`: one frame between run_in_stack and runpy's
        runpy.run_path(main, run_name="__main__")

    try:
        loop.run_until_complete(run_in_stack(run))
    finally:
        os.chdir(cwd)
        sys.path[:] = path
        forget_program_modules(project.root, modules)
        loop.close()
        executor.shutdown(wait=True)


def forget_program_modules(root: Path, before: set[str]) -> None:
    """Drop modules the program imported from its own tree: the next run imports them afresh.

    Installed packages stay, even when the virtualenv lives inside the project (Pulumi.yaml's
    `virtualenv: venv`): provider SDKs register themselves once per process and refuse a second
    registration ("Cannot re-register package tls")."""
    prefix = str(root) + os.sep
    installed = {str(Path(p).resolve()) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) or ""
        if not origin.startswith(prefix) or "site-packages" in origin:
            continue
        if any(str(Path(origin).resolve()).startswith(p) for p in installed):
            continue
        del sys.modules[name]


def _describe(exc: BaseException, root: Path) -> str:
    """Engine-detected problems (duplicate URN, ...) and RunError as a message; other exceptions
    with the traceback from the program's first frame on (the runtime's frames say nothing)."""
    from pulumi.errors import RunError

    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:  # cause/context chains can loop
        visited.add(id(seen))
        if isinstance(seen, (ReplayError, RunError)):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    own = str(Path(__file__).parent) + os.sep

    def in_program(filename: str) -> bool:
        return filename.startswith(str(root) + os.sep) and not filename.startswith(own)

    tb = exc.__traceback__
    while tb is not None and not in_program(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__)).rstrip()

"""The pure half of components/remote_files.py (plain values in, text out; no Pulumi): the host
helper's inputs (manifests), the calls of it, and the read-only checks' stdin; tested by running
the helper. `render_files_apply` and friends render self-contained scripts (the helper inline,
the manifest in the script, contents as `encode_bundle` lines on stdin) for tests and for scripts
that apply files themselves (the nginx transition, which points them at the installed helper).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from components.host_helper_render import (
    HELPER_PATH,
    LIBRARY_MIN,
    LOCK_FILE,
    STATE_DIR,
    SUDO,
    UPLOAD_PATH,
    helper_code,
    helper_library,
    library_id,
)
from components.shell import q, script, template, without_comment_lines

__all__ = [
    "HELPER_PATH", "LOCK_FILE", "MARKER", "READ_COMMAND", "STATE_DIR", "FileSpec", "Manifest", "check_block", "check_specs", "file_host_entries", "host_entries",
    "command_script", "encode_bundle", "read_manifest", "read_script_source", "render_block_apply", "render_block_manifest",
    "render_block_restore", "render_call", "render_files_apply", "render_files_manifest", "render_files_restore",
    "render_read_stdin", "render_copy_read_stdin", "render_run_manifest", "stdin_contents", "strict",
]
MARKER = "mattermost-transport-encryption"
"""The word in a block's BEGIN/END lines (the helper writes `<comment> BEGIN <MARKER> <owner>`)."""

_MODE = re.compile(r"^0?[0-7]{3}$")
_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class FileSpec:
    """Where and how one file is installed."""

    path: str
    """Absolute path on the host."""
    mode: str = "0644"
    """Octal mode, e.g. "0640"."""
    owner: str = "root"
    group: str = "root"

    def __post_init__(self) -> None:
        if (
            not self.path.startswith("/")
            or self.path != self.path.strip()
            or "\n" in self.path
            or "/../" in f"{self.path}/"
        ):
            raise ValueError(f"file path must be absolute and plain: {self.path!r}")
        if not _MODE.match(self.mode):
            raise ValueError(f"file mode must be octal like 0640: {self.mode!r}")
        for who in (self.owner, self.group):
            if not _NAME.match(who):
                raise ValueError(f"not a valid user or group name: {who!r}")


def encode_bundle(contents: Sequence[str]) -> str:
    """Frame file contents for stdin: one base64 line per file, in order."""
    return "".join(base64.b64encode(c.encode()).decode() + "\n" for c in contents)



MANIFEST_MAGIC = "mattermost-transport-encryption helper input v1"
MANIFEST_MAGIC_V2 = "mattermost-transport-encryption helper input v2"
"""Format 2 = format 1 plus gzip+base64 sections; sent only by inputs that have one, so every
input without a large content is byte for byte what format 1 wrote (no update on upgrade)."""
COMPRESS_OVER = 2048
"""A file's content larger than this (bytes) travels gzip+base64 when that saves a third of it:
pulumi-command stores stdin twice per resource (inputs, and outputs that embed the inputs:
provider/pkg/provider/remote/command.go `CommandOutputs`, commandController.go `Create`), and a
node's peer tables grow with the cluster. The file line (path, mode, owner, size, SHA-256) stays
readable, so a preview still names every file that changes; small files stay readable in full."""
GZIP = "gzip+base64"
MANIFEST_MAGIC_V3 = "mattermost-transport-encryption helper input v3"
"""Format 3 = format 2 plus sections that end in an entry of the helper's library (`lib=ID`):
the text every host gets alike lives once in the helper file, which the state holds as a hash;
sent only by inputs that have such a section."""
LIB = "lib="

HOST_ENTRY_MIN = 64
"""A text this long (bytes) goes to the host's own library (a shorter one is hardly longer than
the section line that names it)."""
HOST_ENTRIES: dict[str, str] = {}
"""The texts this process rendered as entries of a host's own library (ID -> text, each line
ending in a newline), so that `read_manifest` reads them back (tests, the replay's preview).

A host's own library: a non-secret input's text that no entry of the shipped library covers
(the cluster's peer tables, a node's CA file, a script with a node's values) travels as an
entry appended to that host's copy of the helper file (components/host_helper.py), which the
state holds as a path and a SHA-256, and the input names it (`lib=ID`, format 3, read by the
helper since format 3 was written). The input keeps every file's path, mode, owner, size and
SHA-256, so a preview's diff still names each file that changes."""


def _sha(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def _packed(content: str) -> str | None:
    """`content` as gzip, base64 lines (76 columns) if it is large and that saves a third of it."""
    data = content.encode()
    if len(data) <= COMPRESS_OVER:
        return None
    packed = base64.encodebytes(gzip.compress(data, compresslevel=9, mtime=0)).decode()
    return packed if len(packed) * 3 <= len(data) * 2 else None


def _library_split(content: str) -> tuple[str, str] | None:
    """(own lines, entry ID) if `content` ends, at a line's start, with an entry of the helper's
    library (the longest that fits); the own lines are what comes before it (parameters)."""
    text = content if content.endswith("\n") else content + "\n"
    best: tuple[str, str] | None = None
    for key, entry in helper_library().items():
        if len(entry) >= LIBRARY_MIN and text.endswith(entry) and (len(text) == len(entry) or text[-len(entry) - 1] == "\n"):
            if best is None or len(text) - len(entry) < len(best[0]):
                best = (text[: len(text) - len(entry)], key)
    return best


def host_key(content: str, library: bool = True) -> str | None:
    """The ID under which `content` goes to the host's own library, or None: too short
    (HOST_ENTRY_MIN), or (`library`) covered by the shipped library."""
    if len(content.encode()) < HOST_ENTRY_MIN:
        return None
    if library and len(content) >= LIBRARY_MIN and _library_split(content) is not None:
        return None
    return library_id(content)


def _host_entry(content: str, library: bool = True) -> str | None:
    """`host_key`, and the text kept in HOST_ENTRIES under it (each line ending in a newline)."""
    key = host_key(content, library)
    if key is not None:
        HOST_ENTRIES[key] = content if content.endswith("\n") else content + "\n"
    return key


def readable_by_all(spec: FileSpec) -> bool:
    """Others may read the file on the host: only such a file's content may go to the host's
    copy of the helper, which is 0755 there."""
    return int(spec.mode, 8) & 0o004 != 0


def file_host_entries(specs: Sequence[FileSpec], contents: Sequence[str]) -> dict[str, str]:
    """The host-library entries render_files_manifest(host=[True...]) makes of these files (the
    same choice, file by file): what the host's copy must carry for them."""
    out = {}
    for spec, content in zip(specs, contents, strict=True):
        if readable_by_all(spec) and (key := _host_entry(content)) is not None:
            out[key] = HOST_ENTRIES[key]
    return out


def _section(
    name: str, content: str, label: str = "", *, pack: bool = False, library: bool = False, host: bool = False
) -> str:
    """One manifest section: a header with the exact byte count, then the lines prefixed "| ".
    `library`: a content that ends in an entry of the helper's library sends only its own lines
    and the entry's ID (format 3). `host` (never for a secret input): a content the library
    does not cover is an entry of the host's own library
    (HOST_ENTRIES) and sends only its ID (HOST_ENTRY_MIN bytes or more). `pack`: a large content goes gzip+base64 (_packed),
    the header saying so."""
    split = _library_split(content) if library and len(content) >= LIBRARY_MIN else None
    if split is None and host and (key := _host_entry(content, library)) is not None:
        split = ("", key)
    if split is not None:
        own, key = split
        head = f"section {name} {len(content.encode())} {LIB}{key}{' ' + label if label else ''}\n"
        return head + "".join(f"| {line}\n" for line in own.split("\n")[:-1])
    packed = _packed(content) if pack else None
    if packed is not None:
        head = f"section {name} {len(content.encode())} {GZIP}{' ' + label if label else ''}\n"
        return head + "".join(f"| {line}\n" for line in packed.splitlines())
    lines = content.split("\n")
    if content.endswith("\n") or not content:
        lines = lines[:-1]
    head = f"section {name} {len(content.encode())}{' ' + label if label else ''}\n"
    return head + "".join(f"| {line}\n" for line in lines)


def _hooks(library: bool, host: bool, **hooks: str | None) -> str:
    return "".join(
        _section(name.replace("_", "-"), body.strip() + "\n", f"({_HOOK_LABEL[name]})", library=library, host=host)
        for name, body in hooks.items()
        if body and body.strip()
    )


_HOOK_LABEL = {
    "validate": "runs after a change, before activate",
    "activate": "runs after a change",
    "restore_activate": "runs on delete, after the originals are back",
    "create": "runs on create",
    "update": "runs on update",
    "delete": "runs on delete",
}


def _file_line(spec: FileSpec, content: str | None) -> str:
    sha, size = (_sha(content), str(len(content.encode()))) if content is not None else ("-", "-")
    return f"file {spec.mode} {spec.owner}:{spec.group} {sha} {size} {spec.path}\n"


def check_specs(owner: str, specs: Sequence[FileSpec]) -> None:
    if not specs:
        raise ValueError("managed_files needs at least one file")
    paths = [s.path for s in specs]
    if len(set(paths)) != len(paths):
        raise ValueError(f"{owner}: a path appears twice: {paths}")


def render_files_manifest(
    owner: str,
    specs: Sequence[FileSpec],
    contents: Sequence[str] | None,
    *,
    validate: str | None = None,
    activate: str | None = None,
    restore_activate: str | None = None,
    library: bool = True,
    host: bool | Sequence[bool] = False,
) -> str:
    """The helper's stdin for files-apply/files-restore: per file its path, mode, owner, size
    and SHA-256, then the hooks, then each file's content as readable lines (a preview's diff
    names every file that changes). `contents=None` leaves them out: they follow as base64 lines
    (`encode_bundle`), for the self-contained renderers below. `library`: a hook or content that
    is an entry of the installed helper's library goes by its ID (False: the self-contained
    renderers, whose helper may be inline). `host`: one the library does not cover goes to the
    host's own library (HOST_ENTRIES; never a secret): True for every hook and content, or per
    content (the hooks then stay in the input)."""
    check_specs(owner, specs)
    if contents is not None and len(contents) != len(specs):
        raise ValueError(f"{owner}: {len(specs)} files but {len(contents)} contents")
    flags = [host] * len(specs) if isinstance(host, bool) else list(host)
    if len(flags) != len(specs):
        raise ValueError(f"{owner}: {len(specs)} files but {len(flags)} host flags")
    # and never a file that others may not read on the host: the helper's copy is 0755
    per_file = [h and readable_by_all(s) for h, s in zip(flags, specs, strict=True)]
    hooks_host = host is True
    out = [f"{MANIFEST_MAGIC}\nowner {owner}\n"]
    texts: Sequence[str | None] = [None] * len(specs) if contents is None else contents
    out += [_file_line(s, c) for s, c in zip(specs, texts, strict=True)]
    out.append(_hooks(library, hooks_host, validate=validate, activate=activate, restore_activate=restore_activate))
    if contents is None:
        out.append("contents base64\n")
    else:
        out += [
            _section(f"content-{i}", c, f"(content of {s.path})", pack=True, library=library, host=h)
            for i, (s, c, h) in enumerate(zip(specs, contents, per_file, strict=True))
        ]
    return _versioned(out)


def _versioned(parts: list[str]) -> str:
    """The input with the format it needs: 3 if a section names a library entry, 2 if one is
    packed, else 1."""
    text = "".join(parts)
    encodings = {"".join(line.split(" ")[3:4]) for line in text.split("\n") if line.startswith("section ")}
    if any(e.startswith(LIB) for e in encodings):
        return MANIFEST_MAGIC_V3 + text[len(MANIFEST_MAGIC):]
    if GZIP in encodings:
        return MANIFEST_MAGIC_V2 + text[len(MANIFEST_MAGIC):]
    return text


def check_block(path: str, comment: str, position: str) -> None:
    FileSpec(path)  # validates the path
    if position not in ("top", "bottom"):
        raise ValueError(f"position must be top or bottom: {position!r}")
    if not comment or any(c.isspace() for c in comment):
        raise ValueError(f"comment must be a non-empty token without spaces: {comment!r}")


def render_block_manifest(
    owner: str,
    path: str,
    content: str | None,
    *,
    comment: str = "#",
    position: str = "bottom",
    validate: str | None = None,
    activate: str | None = None,
    restore_activate: str | None = None,
    library: bool = True,
    host: bool = False,
) -> str:
    """The helper's stdin for block-apply/block-restore (see render_files_manifest)."""
    check_block(path, comment, position)
    sha, size = (_sha(content), str(len(content.encode()))) if content is not None else ("-", "-")
    out = [f"{MANIFEST_MAGIC}\nowner {owner}\nblock {comment} {position} {sha} {size} {path}\n"]
    out.append(_hooks(library, host, validate=validate, activate=activate, restore_activate=restore_activate))
    out.append(
        "contents base64\n"
        if content is None
        else _section("content-0", content, f"(block in {path})", pack=True, library=library, host=host)
    )
    return _versioned(out)


def render_run_manifest(
    owner: str,
    *,
    create: str,
    update: str | None = None,
    delete: str | None = None,
    input: str | None = None,
    host: bool = False,
) -> str:
    """The helper's stdin for run-create/run-update/run-delete: the scripts, and the input the
    script reads on its stdin (`host`: see render_files_manifest)."""
    out = [f"{MANIFEST_MAGIC}\nowner {owner}\n", _hooks(True, host, create=create, update=update, delete=delete)]
    if input is not None:
        out.append(_section("input", input, "(the script's stdin)", host=host))
    return _versioned(out)


@dataclass(frozen=True)
class Manifest:
    """A helper input read back (tests, and the replay's preview): entries, sections, contents."""

    owner: str
    entries: list[str]
    sections: dict[str, str]

    @property
    def contents(self) -> list[str]:
        return [self.sections[f"content-{i}"] for i in range(len(self.entries))]


def read_manifest(text: str) -> Manifest:
    """Parse what render_*_manifest wrote (the same grammar the helper's awk reads)."""
    lines = text.split("\n")
    if not lines or lines[0] not in (MANIFEST_MAGIC, MANIFEST_MAGIC_V2, MANIFEST_MAGIC_V3):
        raise ValueError("not a helper input for interface 1")
    v2, v3 = lines[0] in (MANIFEST_MAGIC_V2, MANIFEST_MAGIC_V3), lines[0] == MANIFEST_MAGIC_V3
    owner, entries, sections = "", [], {}
    name, size, packed, entry, body = "", 0, False, "", []  # type: ignore[var-annotated]

    def close() -> None:
        if name and packed:
            sections[name] = gzip.decompress(base64.b64decode("".join(body))).decode()
        elif name:
            data = "".join(line + "\n" for line in body)
            if entry:
                library_text = helper_library().get(entry, HOST_ENTRIES.get(entry))
                if library_text is None:
                    raise ValueError(f"section {name} names library entry {entry}, which the helper does not have")
                data += library_text
            sections[name] = data[:size] if len(data.encode()) == size + 1 else data

    for line in lines[1:]:
        if line.startswith("| ") or line == "|":
            body.append(line[2:])
            continue
        close()
        name, body = "", []
        if line.startswith("owner "):
            owner = line[6:]
        elif line.startswith(("file ", "block ")):
            entries.append(line)
        elif line.startswith("section "):
            _, name, n, *rest = line.split(" ", 4)
            size, packed = int(n), v2 and rest[:1] == [GZIP]
            entry = rest[0][len(LIB):] if v3 and rest[:1] and rest[0].startswith(LIB) else ""
        elif line in ("", "contents base64"):
            continue
        else:
            raise ValueError(f"unexpected manifest line: {line[:80]!r}")
    close()
    return Manifest(owner, entries, sections)


def host_entries(stdin: str) -> dict[str, str]:
    """The entries of the host's own library that a helper input names (ID -> text): what the
    host's copy of the helper file must carry for it (components/host_helper.py); a read-only
    check's stdin (render_copy_read_stdin) names the check's own."""
    if (key := _copy_read_key(stdin)) is not None:
        return {key: HOST_ENTRIES[key]}
    out = {}
    for line in stdin.split("\n"):
        if line.startswith("section "):
            word = (line.split(" ")[3:4] or [""])[0]
            key = word[len(LIB):] if word.startswith(LIB) else ""
            if key and key not in helper_library():
                if key not in HOST_ENTRIES:
                    raise ValueError(f"helper input names library entry {key}, which this process did not render")
                out[key] = HOST_ENTRIES[key]
    return out


def stdin_contents(stdin: str) -> list[str]:
    """What a command carries on stdin: the files' (or block's) contents in order, or for a
    run_script its input's base64 lines decoded (the framing `encode_bundle` writes)."""
    m = read_manifest(stdin)
    if m.entries:
        return m.contents
    return [base64.b64decode(line).decode() for line in m.sections.get("input", "").splitlines()]


_READS = {
    "files-apply": ("validate", "activate"),
    "block-apply": ("validate", "activate"),
    "files-restore": ("restore-activate",),
    "block-restore": ("restore-activate",),
    "run-create": ("create",),
    "run-update": ("update", "create"),
    "run-delete": ("delete",),
}


def command_script(command: str, stdin: str) -> str:
    """What a helper call runs, as text: the call, the manifest's entry lines and the scripts
    this operation runs (not file contents nor a script's input). For reading a plan."""
    m = read_manifest(stdin)
    op = next((o for o in _READS if f" {o} " in command), "")
    names = _READS.get(op, ())
    scripts = [m.sections[n] for n in names if n in m.sections]
    if op == "run-update":
        scripts = scripts[:1]  # the update script, or create in its place
    return "\n".join([command, *m.entries, *scripts])


def _helper_opts(state_dir: str) -> str:
    # another state dir (tests) gets its own lock beside it
    return "" if state_dir == STATE_DIR else f" --state {q(state_dir)} --lock {q(state_dir + '.lock')}"


def render_call(
    op: str, owner: str, *, helper: str = HELPER_PATH, state_dir: str = STATE_DIR, sudo: bool = False
) -> str:
    """The command text: one short call of the installed helper (its input comes on stdin);
    `sudo`: the SSH user is not root and has passwordless sudo (`-n`: never wait for a password)."""
    return f"{SUDO if sudo else ''}/bin/sh {q(helper)}{_helper_opts(state_dir)} {op} {q(owner)}"


def _self_contained(op: str, owner: str, header: str, state_dir: str, helper: str | None) -> str:
    """A script that runs the helper (`helper`, or its text inline) with `header` followed, for
    an apply, by the base64 bundle this script reads on its own stdin (a restore reads none):
    templates/self-contained-apply.sh and -restore.sh."""
    if helper is None:
        run = f'/bin/sh -c "$mtm_helper" mmtls-helper{_helper_opts(state_dir)} {op} {q(owner)}'
    else:
        run = render_call(op, owner, helper=helper, state_dir=state_dir)
    inline = f"mtm_helper={q(helper_code())}" if helper is None else ""
    step = op.rsplit("-", 1)[1]
    return script(f"self-contained-{step}.sh", code={"inline_helper": inline, "run": run}, header=header)


def render_files_apply(
    owner: str,
    specs: Sequence[FileSpec],
    *,
    validate: str | None = None,
    activate: str | None = None,
    state_dir: str = STATE_DIR,
    helper: str | None = None,
) -> str:
    """Self-contained script that installs len(specs) files read from stdin (`encode_bundle`),
    with backup and rollback: the helper (inline unless `helper` names an installed one) with the
    manifest in the script. The program's own commands use `managed_files` (manifest on stdin)."""
    header = render_files_manifest(owner, specs, None, validate=validate, activate=activate, library=False)
    return _self_contained("files-apply", owner, header, state_dir, helper)


def render_files_restore(
    owner: str,
    specs: Sequence[FileSpec],
    *,
    restore_activate: str | None = None,
    state_dir: str = STATE_DIR,
    helper: str | None = None,
) -> str:
    """Self-contained script that puts back the originals of files this owner still owns, then
    re-activates (ignores its stdin)."""
    header = render_files_manifest(owner, specs, None, restore_activate=restore_activate, library=False)
    return _self_contained("files-restore", owner, header, state_dir, helper)


def render_block_apply(
    owner: str,
    path: str,
    *,
    comment: str = "#",
    position: str = "bottom",
    validate: str | None = None,
    activate: str | None = None,
    state_dir: str = STATE_DIR,
    helper: str | None = None,
) -> str:
    """Self-contained script that puts the block read from stdin (one base64 line) between marker
    lines in an existing file, replacing this owner's earlier block; mode and owner of the file stay."""
    header = render_block_manifest(
        owner, path, None, comment=comment, position=position, validate=validate, activate=activate, library=False
    )
    return _self_contained("block-apply", owner, header, state_dir, helper)


def render_block_restore(
    owner: str,
    path: str,
    *,
    comment: str = "#",
    restore_activate: str | None = None,
    state_dir: str = STATE_DIR,
    helper: str | None = None,
) -> str:
    """Self-contained script that removes exactly this owner's block, leaving the rest of the file."""
    header = render_block_manifest(owner, path, None, comment=comment, restore_activate=restore_activate, library=False)
    return _self_contained("block-restore", owner, header, state_dir, helper)


def strict(text: str) -> str:
    """Prefix a script with the shell settings every script here runs with (templates/script-head.sh)."""
    return template("script-head.sh") + text


READ_COMMAND = "/bin/sh -c 's=$(cat) && exec /bin/sh -c \"$s\" </dev/null'"
"""A read-only script's command text: the whole script is read from stdin first, then run with
stdin closed, so nothing the script starts can swallow the script's own rest."""


PACKED_MARK = "MMTLS_PACKED"


def render_read_stdin(text: str) -> str:
    """A read-only script's stdin: the script itself, or, when large (COMPRESS_OVER, saving a
    third), a short script naming its size and SHA-256 that unpacks it (gzip+base64 in a quoted
    here-document) and runs it. base64 and gzip are on every Debian/Ubuntu host (coreutils and
    gzip are Essential), and the helper is not needed: preflights run before it exists
    (templates/read-packed.sh, whose here-document ends at PACKED_MARK). The script goes
    without its comment lines (components/shell.without_comment_lines)."""
    # its comments document the template, and a state stores this text twice
    text = without_comment_lines(text)
    packed = _packed(text)
    if packed is None:
        return text
    data = text.encode()
    return script(
        "read-packed.sh", code={"packed": packed.removesuffix("\n")}, size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


COPY_READ_HEAD = "# read-only check, entry "


def _copy_read_key(stdin: str) -> str | None:
    """The entry ID a render_copy_read_stdin input names, else None."""
    return stdin[len(COPY_READ_HEAD) :].split(" ", 1)[0] if stdin.startswith(COPY_READ_HEAD) else None


def render_copy_read_stdin(text: str, *, sudo: bool, resource: str, helper: str = HELPER_PATH) -> tuple[str, str]:
    """(stdin, entry ID): a read-only check whose text is an entry of the host's own library
    (templates/read-from-copy.sh), for a check that runs before the helper is installed: the
    entry reaches the host in the copy of the helper file that the upload (`resource`) puts in
    the login user's home, whose state is a path and a hash; the input holds the entry's ID (the
    first 16 hex digits of its SHA-256, checked as the helper checks its own entries). A later
    run reads it from the installed helper (or the copy before it) once the install took the
    upload away. The check runs as root (`sudo`: through SUDO, as every other root command),
    with stdin closed. The script goes without its comment lines; the caller puts the entry (HOST_ENTRIES)
    in the host's copy (components.host_helper.add_host_entries)."""
    body = without_comment_lines(text).rstrip("\n") + "\n"
    key = library_id(body)
    HOST_ENTRIES[key] = body
    wrapper = without_comment_lines(
        script(
            "read-from-copy.sh", code={"id": key, "root": SUDO if sudo else "exec "}, upload=UPLOAD_PATH, helper=helper, resource=resource
        )
    )
    return f"{COPY_READ_HEAD}{key} ({len(body.encode())} bytes)\n{wrapper}", key


def read_script_source(stdin: str) -> str:
    """The script a read-only check runs, from its stdin (render_read_stdin,
    render_copy_read_stdin: its entry as this process rendered it), for reading a plan."""
    if (key := _copy_read_key(stdin)) is not None:
        return HOST_ENTRIES[key]
    if not stdin.startswith("# read-only check, packed: "):
        return stdin
    body = stdin.split(f"<<'{PACKED_MARK}' | gzip -dc\n", 1)[1].split(f"{PACKED_MARK}\n", 1)[0]
    return gzip.decompress(base64.b64decode(body)).decode()

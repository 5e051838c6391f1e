"""The one way this program changes anything on a host.

Owns the shell that installs files and marked blocks over SSH, backs up every original once,
rolls back on a failed validation or activation, and restores the originals on delete. Every
component builds its remote commands through `managed_files`, `managed_block` or `run_script`,
so the guarantees below hold everywhere:

- File content travels in `stdin` (one base64 line per file), never in command text, so secrets
  stay out of the engine's logs, the command text and error messages.
- The first change of a path keeps the original under STATE_DIR/backup; `delete` puts it back
  byte for byte (or removes a file that did not exist, and the directories created for it).
- An owner ledger (STATE_DIR/owners) names the resource that installed each path. Under
  create-before-delete replacement the old resource's `delete` runs after the new `create` and
  finds another owner in the ledger, so it leaves the new files alone.
- Unchanged content (bytes, mode, owner, group) changes nothing and activates nothing: running
  a script twice is safe and cheap.
- A failed `validate` (e.g. `nginx -t`) or `activate` (e.g. restart and wait) puts the previous
  files back, re-activates them, and fails with the tool's own error text. A file that cannot be
  backed up or installed (a full or read-only disk, a file where a directory must be) fails the
  change naming the path, with the files this run already replaced put back: never half a set.
- A path the owner installed before but no longer lists (a moved TLS directory, a renamed site)
  gets its original back in the same change, so nothing it installed outlives it on the host
  (an old private key or an env file with the database password, say); delete sweeps the same way.

The renderers are pure (plain values in, script text out) and tested by running the scripts.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

STATE_DIR = "/var/lib/mattermost-transport-encryption"
MARKER = "mattermost-transport-encryption"

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
        if not self.path.startswith("/") or "\n" in self.path or "/../" in f"{self.path}/":
            raise ValueError(f"file path must be absolute and plain: {self.path!r}")
        if not _MODE.match(self.mode):
            raise ValueError(f"file mode must be octal like 0640: {self.mode!r}")
        for who in (self.owner, self.group):
            if not _NAME.match(who):
                raise ValueError(f"not a valid user or group name: {who!r}")


@dataclass(frozen=True)
class ManagedFile:
    """A file and its content (a plain string or an Output, possibly secret)."""

    spec: FileSpec
    content: pulumi.Input[str]


def _key(path: str) -> str:
    """Stable per-path name for backup and ledger entries."""
    return hashlib.sha256(path.encode()).hexdigest()[:20]


def encode_bundle(contents: Sequence[str]) -> str:
    """Frame file contents for stdin: one base64 line per file, in order."""
    return "".join(base64.b64encode(c.encode()).decode() + "\n" for c in contents)


def _q(value: str) -> str:
    return shlex.quote(value)


def _function(name: str, body: str | None) -> str:
    """A shell function running a component-supplied snippet (values already quoted by its
    renderer) in its own `sh -eu`: inside an `if`, a function's failing steps would not stop it."""
    return f"{name}_sh={_q((body or ':').strip())}\n{name}() {{ sh -euc \"${name}_sh\"; }}\n"


_COMMON = r"""
mtm_fail() { printf '%s\n' "$*" >&2; exit 1; }
mkdir -p "$state/backup" "$state/owners"
chmod 0700 "$state"
tmp=$(mktemp -d "$state/tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mtm_readn() {
  # read $1 base64 lines from stdin into $tmp/new.0 .. new.N-1
  n=0
  while [ "$n" -lt "$1" ]; do
    IFS= read -r line || mtm_fail "input ended after $n of $1 files"
    printf '%s' "$line" | base64 -d > "$tmp/new.$n" || mtm_fail "input file $n is not valid base64"
    n=$((n + 1))
  done
}
mtm_keep_original() {
  # $1 path, $2 key: the first change of a path keeps the original, once
  b="$state/backup/$2"
  if [ ! -e "$b.path" ]; then
    printf '%s\n' "$2" >> "$tmp/fresh" || return 1
    if [ -e "$1" ] || [ -L "$1" ]; then cp -a "$1" "$b.orig" || return 1; else : > "$b.absent" || return 1; fi
    printf '%s\n' "$1" > "$b.path" || return 1
  fi
}
mtm_keep_previous() {
  # $1 path, $2 index: what is there now, for rollback
  if [ -e "$1" ] || [ -L "$1" ]; then cp -a "$1" "$tmp/prev.$2"; else : > "$tmp/prevabsent.$2"; fi
}
mtm_put_back() {
  # $1 path, $2 index: restore the rollback copy (none: this run never got to that file)
  rm -f "$1.mtm-new"
  if [ -e "$tmp/prevabsent.$2" ]; then rm -f "$1"
  elif [ -e "$tmp/prev.$2" ] || [ -L "$tmp/prev.$2" ]; then
    cp -a "$tmp/prev.$2" "$1.mtm-restore" && mv -f "$1.mtm-restore" "$1"
  fi
}
installing=0
mtm_abort() {
  # backing up or installing failed: undo what this run replaced, name the path, fail
  printf '%s\n' "$who: $1" >&2
  if [ "$installing" = 1 ]; then mtm_rollback; else mtm_forget_fresh; mtm_cleanup_dirs; fi
  mtm_fail "$who: nothing was activated; the previous files are back in place"
}
mtm_orphans_restore() {
  # paths this owner installed earlier that it no longer lists ($tmp/keys) get their originals
  # back; what is there now is kept in $tmp for a rollback. Called in an || list: explicit returns.
  : > "$tmp/orphans"
  for o in "$state/owners/"*; do
    [ -f "$o" ] || continue
    k=${o##*/}
    case "$k" in *.*) continue ;; esac  # <key>.<owner> entries belong to blocks
    [ "$(cat "$o")" = "$who" ] || continue
    if [ -e "$tmp/keys" ] && grep -qxF "$k" "$tmp/keys"; then continue; fi
    [ -e "$state/backup/$k.path" ] || continue
    p=$(cat "$state/backup/$k.path") || return 1
    b="$state/backup/$k"
    if [ -e "$p" ] || [ -L "$p" ]; then cp -a "$p" "$tmp/orphan.$k" || return 1; else : > "$tmp/orphanabsent.$k"; fi
    printf '%s\n' "$k" >> "$tmp/orphans"
    if [ -e "$b.absent" ]; then rm -f "$p" || return 1
    elif [ -e "$b.orig" ] || [ -L "$b.orig" ]; then
      cp -a "$b.orig" "$p.mtm-restore" && mv -f "$p.mtm-restore" "$p" || return 1
    fi
    echo "$who: $p is no longer managed; its original is back"
  done
}
mtm_orphans_put_back() {
  # rollback of mtm_orphans_restore
  [ -s "$tmp/orphans" ] || return 0
  while IFS= read -r k; do
    p=$(cat "$state/backup/$k.path")
    if [ -e "$tmp/orphanabsent.$k" ]; then rm -f "$p"
    elif [ -e "$tmp/orphan.$k" ] || [ -L "$tmp/orphan.$k" ]; then
      cp -a "$tmp/orphan.$k" "$p.mtm-restore" && mv -f "$p.mtm-restore" "$p"
    fi
  done < "$tmp/orphans"
}
mtm_orphans_forget() {
  # after success: the restored paths leave the ledger and their backups go
  [ -s "$tmp/orphans" ] || return 0
  while IFS= read -r k; do
    rm -f "$state/backup/$k.orig" "$state/backup/$k.absent" "$state/backup/$k.path" "$state/owners/$k"
  done < "$tmp/orphans"
}
mtm_mkdirs() {
  # create the parent directories of $1, remembering the ones we made so delete removes them
  d=$(dirname "$1") made=""
  while [ ! -d "$d" ]; do made="$d
$made"; d=$(dirname "$d"); done
  if [ -n "$made" ]; then
    printf '%s' "$made" | while IFS= read -r m; do
      [ -n "$m" ] || continue
      mkdir -m 0755 "$m" 2>/dev/null || [ -d "$m" ]
      grep -qxF "$m" "$state/dirs" 2>/dev/null || printf '%s\n' "$m" >> "$state/dirs"
    done
  fi
}
mtm_forget_fresh() {
  # a first apply that failed leaves no backup behind
  [ -e "$tmp/fresh" ] || return 0
  while IFS= read -r k; do rm -f "$state/backup/$k.orig" "$state/backup/$k.absent" "$state/backup/$k.path"; done < "$tmp/fresh"
}
mtm_cleanup_dirs() {
  # remove directories we created once they are empty, deepest first; then our own state dir
  if [ -e "$state/dirs" ]; then
    sort -r "$state/dirs" > "$tmp/dirs"
    while IFS= read -r d; do
      if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || :; fi
    done < "$tmp/dirs"
    # the ones still there, in their recorded order: a rollback leaves this file as it found it
    : > "$tmp/dirs.keep"
    while IFS= read -r d; do
      if [ -d "$d" ]; then printf '%s\n' "$d" >> "$tmp/dirs.keep"; fi
    done < "$state/dirs"
    if [ ! -s "$tmp/dirs.keep" ]; then rm -f "$state/dirs"
    elif ! cmp -s "$tmp/dirs.keep" "$state/dirs"; then cp "$tmp/dirs.keep" "$state/dirs"; fi
  fi
  if [ -z "$(ls -A "$state/backup")" ] && [ -z "$(ls -A "$state/owners")" ] && [ ! -e "$state/dirs" ]; then
    rm -rf "$tmp"; trap - EXIT
    rmdir "$state/backup" "$state/owners" "$state" 2>/dev/null || true
  fi
}
mtm_apply_or_rollback() {
  # validate, then activate; on failure put every previous file back and re-activate
  if ! (mtm_validate) > "$tmp/log" 2>&1; then
    cat "$tmp/log" >&2
    mtm_rollback
    mtm_fail "$who: validation failed; the previous configuration is back in place"
  fi
  if ! (mtm_activate) > "$tmp/log" 2>&1; then
    cat "$tmp/log" >&2
    mtm_rollback
    (mtm_activate) > /dev/null 2>&1 || printf '%s\n' "$who: re-activating the previous configuration failed too" >&2
    mtm_fail "$who: activation failed; the previous configuration is back in place"
  fi
  cat "$tmp/log"
}
"""


def _header(owner: str, state_dir: str) -> str:
    return (
        "set -eu\numask 077\n"
        f"who={_q(owner)}\nstate={_q(state_dir)}\n"
        "export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    )


def _mode_digits(mode: str) -> str:
    return format(int(mode, 8), "o")


def render_files_apply(
    owner: str,
    specs: Sequence[FileSpec],
    *,
    validate: str | None = None,
    activate: str | None = None,
    state_dir: str = STATE_DIR,
) -> str:
    """Script that installs len(specs) files read from stdin, with backup and rollback."""
    if not specs:
        raise ValueError("managed_files needs at least one file")
    paths = [s.path for s in specs]
    if len(set(paths)) != len(paths):
        raise ValueError(f"{owner}: a path appears twice: {paths}")
    out = [_header(owner, state_dir), _COMMON]
    out.append(_function("mtm_validate", validate))
    out.append(_function("mtm_activate", activate))
    out.append("mtm_rollback() {\n")
    for i, s in enumerate(specs):
        out.append(f"  mtm_put_back {_q(s.path)} {i}\n")
    out.append("  mtm_orphans_put_back\n  mtm_forget_fresh\n  mtm_cleanup_dirs\n}\n")
    out.append(f"mtm_readn {len(specs)}\n")
    out.append("printf '%s\\n' " + " ".join(_q(_key(s.path)) for s in specs) + ' > "$tmp/keys"\nchanged=0\n')
    # every backup first: if one fails, nothing on the host has changed yet
    for i, s in enumerate(specs):
        p, k = _q(s.path), _q(_key(s.path))
        fail = _q(f"could not back up {s.path}")
        out.append(f"mtm_keep_original {p} {k} || mtm_abort {fail}\nmtm_keep_previous {p} {i} || mtm_abort {fail}\n")
    out.append("installing=1\n")
    for i, s in enumerate(specs):
        p = _q(s.path)
        want = _q(f"{_mode_digits(s.mode)} {s.owner} {s.group}")
        out.append(
            f"if [ -f {p} ] && [ ! -L {p} ] && cmp -s \"$tmp/new.{i}\" {p} "
            f"&& [ \"$(stat -c '%a %U %G' {p})\" = {want} ]; then :\n"
            f"else\n"
            f"  changed=1\n"
            f"  {{ mtm_mkdirs {p} &&\n"
            f"    install -m {_q(s.mode)} -o {_q(s.owner)} -g {_q(s.group)} \"$tmp/new.{i}\" {_q(s.path + '.mtm-new')} &&\n"
            f"    mv -f {_q(s.path + '.mtm-new')} {p}; }} || mtm_abort {_q(f'could not install {s.path}')}\n"
            f"fi\n"
        )
    out.append(
        "mtm_orphans_restore || mtm_abort 'could not put back the original of a path it no longer manages'\n"
        'if [ -s "$tmp/orphans" ]; then changed=1; fi\n'
        'if [ "$changed" = 1 ]; then\n  mtm_apply_or_rollback\nfi\n'
    )
    for s in specs:
        out.append(f"printf '%s\\n' \"$who\" > \"$state/owners/\"{_q(_key(s.path))}\n")
    out.append('if [ -s "$tmp/orphans" ]; then\n  mtm_orphans_forget\n  mtm_cleanup_dirs\nfi\n')
    out.append('if [ "$changed" = 1 ]; then echo "$who: changed"; else echo "$who: unchanged"; fi\n')
    return "".join(out)


def render_files_restore(
    owner: str,
    specs: Sequence[FileSpec],
    *,
    restore_activate: str | None = None,
    state_dir: str = STATE_DIR,
) -> str:
    """Script that puts back the originals of files this owner still owns, then re-activates."""
    out = [_header(owner, state_dir), _COMMON, _function("mtm_restore_activate", restore_activate)]
    out.append("restored=0\n")
    for s in specs:
        p, k = _q(s.path), _q(_key(s.path))
        out.append(
            f"b=\"$state/backup/\"{k}\n"
            f"if [ \"$(cat \"$state/owners/\"{k} 2>/dev/null || true)\" != \"$who\" ]; then\n"
            f"  echo \"$who: \"{p}\" belongs to another resource now; left as it is\"\n"
            f"else\n"
            f"  if [ -e \"$b.absent\" ]; then rm -f {p}\n"
            f"  elif [ -e \"$b.orig\" ] || [ -L \"$b.orig\" ]; then cp -a \"$b.orig\" {_q(s.path + '.mtm-restore')} && mv -f {_q(s.path + '.mtm-restore')} {p}\n"
            f"  fi\n"
            f"  rm -f \"$b.orig\" \"$b.absent\" \"$b.path\" \"$state/owners/\"{k}\n"
            f"  restored=1\n"
            f"fi\n"
        )
    # anything else still in this owner's name (a path an older version of it installed)
    out.append(
        "printf '%s\\n' " + " ".join(_q(_key(s.path)) for s in specs) + ' > "$tmp/keys"\n'
        "mtm_orphans_restore || mtm_fail \"$who: could not put back the original of a path it no longer manages\"\n"
        'if [ -s "$tmp/orphans" ]; then restored=1; fi\n'
    )
    out.append(
        'if [ "$restored" = 1 ]; then\n'
        "  mtm_restore_activate\n"
        '  echo "$who: restored"\n'
        "fi\n"
        "mtm_orphans_forget\n"
        "mtm_cleanup_dirs\n"
    )
    return "".join(out)


def _block_markers(owner: str, comment: str) -> tuple[str, str]:
    return f"{comment} BEGIN {MARKER} {owner}", f"{comment} END {MARKER} {owner}"


def render_block_apply(
    owner: str,
    path: str,
    *,
    comment: str = "#",
    position: str = "bottom",
    validate: str | None = None,
    activate: str | None = None,
    state_dir: str = STATE_DIR,
) -> str:
    """Script that puts the block read from stdin (one base64 line) between marker lines in
    an existing file, replacing this owner's earlier block; mode and owner of the file stay."""
    FileSpec(path)  # validates the path
    if position not in ("top", "bottom"):
        raise ValueError(f"position must be top or bottom: {position!r}")
    begin, end = _block_markers(owner, comment)
    p, k = _q(path), _q(_key(path))
    return "".join(
        [
            _header(owner, state_dir),
            _COMMON,
            _function("mtm_validate", validate),
            _function("mtm_activate", activate),
            f"mtm_rollback() {{\n  mtm_put_back {p} 0\n  mtm_forget_fresh\n  mtm_cleanup_dirs\n}}\n",
            f"[ -f {p} ] || mtm_fail \"$who: \"{p}\" does not exist; it must exist before a block can be added\"\n",
            "mtm_readn 1\n",
            f"begin={_q(begin)}\nend={_q(end)}\n",
            f"mtm_keep_original {p} {k} || mtm_abort {_q(f'could not back up {path}')}\n",
            f"mtm_keep_previous {p} 0 || mtm_abort {_q(f'could not back up {path}')}\n",
            # the file without our block; remember if its last line had no newline
            f"awk -v b=\"$begin\" -v e=\"$end\" '$0==b{{s=1;next}} s&&$0==e{{s=0;next}} !s' {p} > \"$tmp/rest\"\n",
            # awk ends every line with a newline; give back the file's own last byte
            f"if [ -s {p} ] && [ -n \"$(tail -c 1 {p})\" ]; then truncate -s -1 \"$tmp/rest\"; fi\n",
            "nonl=0\n",
            # appending after a last line without newline adds one; delete takes it away again
            "if [ -s \"$tmp/rest\" ] && [ -n \"$(tail -c 1 \"$tmp/rest\")\" ]; then nonl=1; fi\n"
            if position == "bottom"
            else "",
            f"b=\"$state/backup/\"{k}\n",
            "if [ \"$nonl\" = 1 ]; then : > \"$b.nonl\"; fi\n",
            "{\n",
            "  cat \"$tmp/rest\"\n  if [ \"$nonl\" = 1 ]; then echo; fi\n" if position == "bottom" else "",
            "  printf '%s\\n' \"$begin\"\n  cat \"$tmp/new.0\"\n",
            "  if [ -n \"$(tail -c 1 \"$tmp/new.0\")\" ]; then echo; fi\n",
            "  printf '%s\\n' \"$end\"\n",
            "  cat \"$tmp/rest\"\n" if position == "top" else "",
            "} > \"$tmp/next\"\n",
            "changed=0\n",
            f"if ! cmp -s \"$tmp/next\" {p}; then\n",
            "  changed=1\n",
            "  installing=1\n",
            # cp onto the existing inode's copy keeps the file's mode and owner
            f"  {{ cp -a {p} {_q(path + '.mtm-new')} &&\n",
            f"    cat \"$tmp/next\" > {_q(path + '.mtm-new')} &&\n",
            f"    mv -f {_q(path + '.mtm-new')} {p}; }} || mtm_abort {_q(f'could not write {path}')}\n",
            "  mtm_apply_or_rollback\n",
            "fi\n",
            f"printf '%s\\n' \"$who\" > \"$state/owners/\"{k}.{_q(_key(owner))}\n",
            'if [ "$changed" = 1 ]; then echo "$who: changed"; else echo "$who: unchanged"; fi\n',
        ]
    )


def render_block_restore(
    owner: str,
    path: str,
    *,
    comment: str = "#",
    restore_activate: str | None = None,
    state_dir: str = STATE_DIR,
) -> str:
    """Script that removes exactly this owner's block, leaving the rest of the file as it is."""
    begin, end = _block_markers(owner, comment)
    p, k = _q(path), _q(_key(path))
    ledger = f"\"$state/owners/\"{k}.{_q(_key(owner))}"
    return "".join(
        [
            _header(owner, state_dir),
            _COMMON,
            _function("mtm_restore_activate", restore_activate),
            f"begin={_q(begin)}\nend={_q(end)}\nb=\"$state/backup/\"{k}\n",
            f"if [ -f {p} ] && grep -qxF \"$begin\" {p}; then\n",
            f"  awk -v b=\"$begin\" -v e=\"$end\" '$0==b{{s=1;next}} s&&$0==e{{s=0;next}} !s' {p} > \"$tmp/rest\"\n",
            # awk added a newline the file did not end with, or we added one before our block
            f"  if [ -s \"$tmp/rest\" ] && {{ [ -n \"$(tail -c 1 {p})\" ] || [ -e \"$b.nonl\" ]; }}; then\n"
            "    truncate -s -1 \"$tmp/rest\"\n  fi\n",
            f"  cp -a {p} {_q(path + '.mtm-restore')}\n",
            f"  cat \"$tmp/rest\" > {_q(path + '.mtm-restore')}\n",
            f"  mv -f {_q(path + '.mtm-restore')} {p}\n",
            "  rm -f \"$b.orig\" \"$b.absent\" \"$b.path\" \"$b.nonl\" " + ledger + "\n",
            "  mtm_restore_activate\n",
            '  echo "$who: block removed"\n',
            "else\n",
            "  rm -f " + ledger + "\n",
            '  echo "$who: no block to remove"\n',
            "fi\n",
            "mtm_cleanup_dirs\n",
        ]
    )


def _command_opts(
    opts: pulumi.ResourceOptions | None, secret: bool
) -> pulumi.ResourceOptions:
    extra = pulumi.ResourceOptions(
        additional_secret_outputs=["stdout", "stderr"] if secret else None,
    )
    return pulumi.ResourceOptions.merge(opts or pulumi.ResourceOptions(), extra)


def _logging(secret: bool) -> remote.Logging:
    return remote.Logging.NONE if secret else remote.Logging.STDOUT_AND_STDERR


def managed_files(
    name: str,
    *,
    connection: remote.ConnectionArgs,
    files: Sequence[ManagedFile],
    validate: str | None = None,
    activate: str | None = None,
    restore_activate: str | None = None,
    secret: bool = False,
    opts: pulumi.ResourceOptions | None = None,
) -> remote.Command:
    """A remote command that owns `files` on one host (see the module docstring).

    `name` must be unique per host and stable: it is the owner written in the ledger.
    """
    specs = [f.spec for f in files]
    stdin = pulumi.Output.all(*[f.content for f in files]).apply(encode_bundle)
    script = render_files_apply(name, specs, validate=validate, activate=activate)
    return remote.Command(
        name,
        connection=connection,
        create=script,
        update=script,
        delete=render_files_restore(name, specs, restore_activate=restore_activate),
        stdin=pulumi.Output.secret(stdin) if secret else stdin,
        logging=_logging(secret),
        add_previous_output_in_env=False,
        opts=_command_opts(opts, secret),
    )


def managed_block(
    name: str,
    *,
    connection: remote.ConnectionArgs,
    path: str,
    content: pulumi.Input[str],
    comment: str = "#",
    position: str = "bottom",
    validate: str | None = None,
    activate: str | None = None,
    restore_activate: str | None = None,
    secret: bool = False,
    opts: pulumi.ResourceOptions | None = None,
) -> remote.Command:
    """A remote command that owns one marked block inside an existing file."""
    script = render_block_apply(
        name, path, comment=comment, position=position, validate=validate, activate=activate
    )
    stdin = pulumi.Output.from_input(content).apply(lambda c: encode_bundle([c]))
    return remote.Command(
        name,
        connection=connection,
        create=script,
        update=script,
        delete=render_block_restore(name, path, comment=comment, restore_activate=restore_activate),
        stdin=pulumi.Output.secret(stdin) if secret else stdin,
        logging=_logging(secret),
        add_previous_output_in_env=False,
        opts=_command_opts(opts, secret),
    )


def strict(script: str) -> str:
    """Prefix a script with the shell settings every script here runs with."""
    return "set -eu\nexport LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" + script


def run_script(
    name: str,
    *,
    connection: remote.ConnectionArgs,
    create: str,
    delete: str | None = None,
    update: str | None = None,
    stdin: pulumi.Input[str] | None = None,
    secret: bool = False,
    triggers: Sequence[pulumi.Input[object]] | None = None,
    opts: pulumi.ResourceOptions | None = None,
) -> remote.Command:
    """A one-off action (create/update/delete scripts, values already quoted by the caller)."""
    return remote.Command(
        name,
        connection=connection,
        create=strict(create),
        update=strict(update) if update is not None else None,
        delete=strict(delete) if delete is not None else None,
        stdin=(pulumi.Output.secret(stdin) if secret else stdin) if stdin is not None else None,
        triggers=list(triggers) if triggers is not None else None,
        logging=_logging(secret),
        add_previous_output_in_env=False,
        opts=_command_opts(opts, secret),
    )

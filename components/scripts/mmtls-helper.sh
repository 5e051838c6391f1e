#!/bin/sh
# mattermost-transport-encryption host helper, interface 1.
#
# Installed once per host (components/host_helper.py) as
# /usr/local/lib/mattermost-transport-encryption/helper-v1; every remote command of the program
# is a short call of it:
#
#   helper-v1 [--state DIR] [--lock FILE] OP OWNER   < input
#
# OP: files-apply | files-restore | block-apply | block-restore | run-create | run-update | run-delete
# The input on stdin is a readable manifest (components/remote_files_render.py renders it):
#
#   mattermost-transport-encryption helper input v1
#   owner OWNER
#   file MODE USER:GROUP SHA256 BYTES PATH          (one per file, in order)
#   block COMMENT POSITION SHA256 BYTES PATH        (block ops: the one block)
#   section NAME BYTES [label]                      (then the section's lines, each prefixed "| ")
#   contents base64                                 (optional, last: one base64 line per file)
#
# Sections: validate, activate, restore-activate (hooks, shell), content-N (file N's bytes),
# create, update, delete, input (run ops: the script and its stdin).
#
# Input format 2 (first line "... helper input v2") is format 1 plus one encoding: a section
# whose header reads `section NAME BYTES gzip+base64 [label]` carries its BYTES as gzip, base64
# lines (each prefixed "| "). The program sends it for large contents only (a node's peer tables
# at 100 nodes), so the state that stores every input twice stays small; file lines, hooks and
# small contents stay readable. Format 1 inputs are read exactly as before.
#
# Input format 3 (first line "... helper input v3") is format 2 plus one more: a section whose
# header reads `section NAME BYTES lib=ID [label]` is its own lines (none, or a few that set
# parameters) followed by the text of entry ID of the library at the end of this file: the
# scripts and files that are the same on every host (the firewall's and the tunnels' program,
# the preflights' checks, units). The helper travels as a file asset, which the state holds as a
# hash (components/host_helper.py), so those bytes are no longer stored twice per command per
# node. ID is the first 16 hex digits of the entry's SHA-256 (of its lines, each ending in a
# newline); the helper checks it. The library only grows (tools/helper_library.py appends), so
# a delete command stored in a state keeps finding the entries its input names.
#
# Interface 1 is stable: delete commands stored in a stack's state call it long after they were
# written, so it keeps reading every input format it ever accepted (tests/unit/test_host_helper.py
# runs frozen format-1 inputs), and a change of OP or arguments ships as helper-v2 next to this file.
# The state layout under STATE (backup/, owners/, dirs) is the one every earlier version of the
# program wrote, so hosts it configured converge without a change.
#
# Guarantees (see the remote_files module docstring): the first change of a path keeps its
# original; the owner ledger keeps a replaced resource's late delete off the new files;
# unchanged input changes and activates nothing; a failed validation or activation puts the
# previous files back; paths an owner no longer lists get their originals back. Every run holds
# a per-host lock, so concurrent commands on one host never race on STATE or on the daemons
# their hooks restart.
set -eu
# run-* scripts get the caller's umask back (they create accounts and directories); file
# operations and their hooks run with 077 as they always did
caller_umask=$(umask)
umask 077
LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL PATH

state=/var/lib/mattermost-transport-encryption
lock=/run/lock/mattermost-transport-encryption.lock
lock_wait=1800
MAGIC="mattermost-transport-encryption helper input v1"
MAGIC2="mattermost-transport-encryption helper input v2"
MAGIC3="mattermost-transport-encryption helper input v3"
# this file, for its library (the program runs it as `/bin/sh PATH`)
self=$0

mtm_fail() { printf '%s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --state) [ $# -ge 2 ] || mtm_fail "helper: --state needs a value"; state=$2; shift 2 ;;
    --lock) [ $# -ge 2 ] || mtm_fail "helper: --lock needs a value"; lock=$2; shift 2 ;;
    --) shift; break ;;
    -*) mtm_fail "helper: unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || mtm_fail "usage: helper-v1 [--state DIR] [--lock FILE] OP OWNER < input"
op=$1
who=$2
case "$op" in
  files-apply | files-restore | block-apply | block-restore | run-create | run-update | run-delete) ;;
  *) mtm_fail "helper: unknown operation $op (this is interface 1)" ;;
esac

# One run at a time per host. A helper started by a script this helper runs (a run-* script that
# applies files itself) already holds the lock through its parent.
if [ "${MMTLS_HELPER_LOCKED:-}" != "$lock" ]; then
  [ -d "${lock%/*}" ] || mkdir -p "${lock%/*}"
  exec 9>>"$lock"
  flock -w "$lock_wait" 9 || mtm_fail "$who: another command held $lock for more than $lock_wait s"
  MMTLS_HELPER_LOCKED=$lock
  export MMTLS_HELPER_LOCKED
fi

drop_state=0
case "$op" in
  run-*) tmp=$(mktemp -d) ;;
  *)
    mkdir -p "$state/backup" "$state/owners"
    chmod 0700 "$state"
    tmp=$(mktemp -d "$state/tmp.XXXXXX")
    ;;
esac
trap 'mtm_exit || :' EXIT

# ---------------------------------------------------------------------------------- the input
mtm_parse() {
  # split stdin into $tmp/list (file/block lines), $tmp/s.NAME (sections), $tmp/b64.N
  awk -v dir="$tmp" -v magic="$MAGIC" -v magic2="$MAGIC2" -v magic3="$MAGIC3" '
    function bad(msg) { print "helper: " msg > "/dev/stderr"; failed = 1; exit 2 }
    NR == 1 {
      if ($0 == magic3) { v2 = 1; v3 = 1 }
      else if ($0 == magic2) v2 = 1
      else if ($0 != magic) bad("stdin is not a helper input for interface 1")
      next
    }
    b64 { f = dir "/b64." (nb64 + 0); print > f; close(f); nb64++; next }
    /^\| / || $0 == "|" { if (out == "") bad("content line " NR " outside a section"); print substr($0, 3) > out; next }
    { if (out != "") { close(out); out = "" } }
    $1 == "owner" { print substr($0, 7) > (dir "/owner"); next }
    $1 == "file" || $1 == "block" { print > (dir "/list"); next }
    $1 == "section" {
      if ($2 !~ /^[a-z0-9-]+$/ || $3 !~ /^[0-9]+$/) bad("bad section line " NR)
      out = dir "/s." $2; printf "" > out
      enc = "plain"; id = "-"
      if (v2 && $4 == "gzip+base64") enc = "gzip"
      else if (v3 && $4 ~ /^lib=[0-9a-f]+$/) {
        enc = "lib"; id = substr($4, 5)
        if (length(id) != 16) bad("bad library entry in section line " NR)
      }
      print $2, $3, enc, id > (dir "/sections"); next
    }
    $0 == "contents base64" { b64 = 1; next }
    $0 == "" { next }
    { bad("unexpected input line " NR) }
    END { if (!failed && NR == 0) bad("no input on stdin") }
  ' || mtm_fail "$who: the helper input is damaged"
  [ -e "$tmp/list" ] || : > "$tmp/list"
  if [ -e "$tmp/owner" ] && [ "$(cat "$tmp/owner")" != "$who" ]; then
    mtm_fail "$who: the input was written for $(cat "$tmp/owner")"
  fi
  # each section ends with the newline awk printed; cut the one its content did not have
  if [ -e "$tmp/sections" ]; then
    while IFS=' ' read -r name size enc id <&3; do
      f="$tmp/s.$name"
      if [ "$enc" = lib ]; then
        # the section's own lines (parameters), then the library entry
        if ! mtm_lib "$id" > "$f.lib"; then
          rm -f "$f.lib"
          # a restore runs only its hook: an input stored before the host's copy of the helper
          # changed may name contents that copy no longer has, which a restore does not read
          case "$op:$name" in
            *-restore:content-* | run-delete:input | run-delete:create | run-delete:update) : > "$f"; continue ;;
          esac
          mtm_fail "$who: section $name needs entry $id of the helper's library, and $self has none (an older helper): pulumi up installs the program's helper first"
        fi
        [ "$(sha256sum < "$f.lib" | cut -c1-16)" = "$id" ] || mtm_fail "$who: entry $id of the library in $self is damaged"
        cat "$f.lib" >> "$f"
        rm -f "$f.lib"
      fi
      if [ "$enc" = gzip ]; then
        # base64 -d skips the line ends; the size (and a content's hash) check what came out
        { tr -d '\n' < "$f" | base64 -d | gzip -dc > "$f.plain"; } 2>/dev/null ||
          mtm_fail "$who: section $name is not valid gzip+base64"
        mv -f "$f.plain" "$f"
        have=$(wc -c < "$f")
        [ "$have" -eq "$size" ] || mtm_fail "$who: section $name has $have bytes, expected $size"
        continue
      fi
      have=$(wc -c < "$f")
      if [ "$have" -eq $((size + 1)) ]; then truncate -s "$size" "$f"
      elif [ "$have" -ne "$size" ]; then mtm_fail "$who: section $name has $have bytes, expected $size"
      fi
    done 3< "$tmp/sections"
  fi
}

mtm_lib() {
  # $1 entry ID: its text (the "#|" lines after "#@lib ID" at the end of this file, or of the
  # host's previous copy, $self.prev, which the install keeps for inputs stored before it);
  # status 3 if absent
  mtm_id=$1
  set -- "$self"
  [ ! -f "$self.prev" ] || set -- "$self" "$self.prev"
  awk -v id="$mtm_id" '
    FNR == 1 { if (found) exit; on = 0 }
    $1 == "#@lib" { if (on) exit; on = ($2 == id); if (on) found = 1; next }
    on && substr($0, 1, 2) == "#|" { print substr($0, 3); next }
    on { exit }
    END { exit found ? 0 : 3 }
  ' "$@"
}

mtm_contents() {
  # $tmp/new.0 .. new.N-1 from the content sections or the base64 lines; hashes checked
  # (own variable names: a read at the end of the list empties them)
  n=0
  while IFS=' ' read -r c_kind _ _ c_sha _ c_path <&3; do
    [ "$c_kind" = file ] || [ "$c_kind" = block ] || mtm_fail "$who: unknown entry $c_kind"
    if [ -e "$tmp/s.content-$n" ]; then mv "$tmp/s.content-$n" "$tmp/new.$n"
    elif [ -e "$tmp/b64.$n" ]; then
      tr -d '\n' < "$tmp/b64.$n" | base64 -d > "$tmp/new.$n" 2>/dev/null || mtm_fail "input file $n is not valid base64"
    else
      mtm_fail "input ended after $n of $(wc -l < "$tmp/list") files"
    fi
    if [ "$c_sha" != "-" ] && [ "$(sha256sum < "$tmp/new.$n" | cut -c1-64)" != "$c_sha" ]; then
      mtm_fail "$who: the content of $c_path does not match its hash (sha256 $c_sha)"
    fi
    n=$((n + 1))
  done 3< "$tmp/list"
}

mtm_key() { printf '%s' "$1" | sha256sum | cut -c1-20; }

mtm_hook() {
  # run a hook section in its own `sh -eu`, without the lock's descriptor (a daemon it starts
  # must not hold the host's lock)
  if [ -s "$tmp/s.$1" ]; then sh -eu "$tmp/s.$1" 9>&-; fi
}

# ------------------------------------------------------------------- backup, ledger, rollback
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
      { cp -a "$b.orig" "$p.mtm-restore" && mv -f "$p.mtm-restore" "$p"; } || return 1
    fi
    echo "$who: $p is no longer managed; its original is back"
  done
}
mtm_orphans_put_back() {
  # rollback of mtm_orphans_restore
  [ -s "$tmp/orphans" ] || return 0
  while IFS= read -r k <&3; do
    p=$(cat "$state/backup/$k.path")
    if [ -e "$tmp/orphanabsent.$k" ]; then rm -f "$p"
    elif [ -e "$tmp/orphan.$k" ] || [ -L "$tmp/orphan.$k" ]; then
      cp -a "$tmp/orphan.$k" "$p.mtm-restore" && mv -f "$p.mtm-restore" "$p"
    fi
  done 3< "$tmp/orphans"
}
mtm_orphans_forget() {
  # after success: the restored paths leave the ledger and their backups go
  [ -s "$tmp/orphans" ] || return 0
  while IFS= read -r k <&3; do
    rm -f "$state/backup/$k.orig" "$state/backup/$k.absent" "$state/backup/$k.path" "$state/owners/$k"
  done 3< "$tmp/orphans"
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
  while IFS= read -r k <&3; do rm -f "$state/backup/$k.orig" "$state/backup/$k.absent" "$state/backup/$k.path"; done 3< "$tmp/fresh"
}
mtm_cleanup_dirs() {
  # remove directories we created once they are empty, deepest first; then our own state dir
  if [ -e "$state/dirs" ]; then
    sort -r "$state/dirs" > "$tmp/dirs"
    while IFS= read -r d <&3; do
      if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || :; fi
    done 3< "$tmp/dirs"
    # the ones still there, in their recorded order: a rollback leaves this file as it found it
    : > "$tmp/dirs.keep"
    while IFS= read -r d <&3; do
      if [ -d "$d" ]; then printf '%s\n' "$d" >> "$tmp/dirs.keep"; fi
    done 3< "$state/dirs"
    if [ ! -s "$tmp/dirs.keep" ]; then rm -f "$state/dirs"
    elif ! cmp -s "$tmp/dirs.keep" "$state/dirs"; then cp "$tmp/dirs.keep" "$state/dirs"; fi
  fi
  # our own state dir goes when the run ends (mtm_exit): hooks still run from $tmp until then
  drop_state=1
}
mtm_exit() {
  rm -rf "$tmp"
  if [ "$drop_state" = 1 ] && [ -z "$(ls -A "$state/backup")" ] && [ -z "$(ls -A "$state/owners")" ] &&
    [ ! -e "$state/dirs" ]; then
    rmdir "$state/backup" "$state/owners" "$state" 2>/dev/null || :
  fi
}
mtm_apply_or_rollback() {
  # validate, then activate; on failure put every previous file back and re-activate
  if ! mtm_hook validate > "$tmp/log" 2>&1; then
    cat "$tmp/log" >&2
    mtm_rollback
    mtm_fail "$who: validation failed; the previous configuration is back in place"
  fi
  if ! mtm_hook activate > "$tmp/log" 2>&1; then
    cat "$tmp/log" >&2
    mtm_rollback
    mtm_hook activate > /dev/null 2>&1 || printf '%s\n' "$who: re-activating the previous configuration failed too" >&2
    mtm_fail "$who: activation failed; the previous configuration is back in place"
  fi
  cat "$tmp/log"
}
mtm_rollback() {
  # every listed path back as this run found it; orphans too; then forget fresh backups
  i=0
  while IFS=' ' read -r _ _ _ _ _ p <&3; do
    mtm_put_back "$p" "$i"
    i=$((i + 1))
  done 3< "$tmp/list"
  mtm_orphans_put_back
  mtm_forget_fresh
  mtm_cleanup_dirs
}
mtm_same_file() {
  # $1 new content, $2 path, $3 "mode user group" as stat prints it
  [ -f "$2" ] && [ ! -L "$2" ] && cmp -s "$1" "$2" && [ "$(stat -c '%a %U %G' "$2")" = "$3" ]
}

# ----------------------------------------------------------------------------------- files
files_apply() {
  [ -s "$tmp/list" ] || mtm_fail "$who: no files in the input"
  mtm_contents
  : > "$tmp/keys"
  while IFS=' ' read -r kind _ _ _ _ p <&3; do
    [ "$kind" = file ] || mtm_fail "$who: files-apply got a $kind entry"
    k=$(mtm_key "$p")
    if grep -qxF "$k" "$tmp/keys"; then mtm_fail "$who: a path appears twice: $p"; fi
    printf '%s\n' "$k" >> "$tmp/keys"
  done 3< "$tmp/list"
  changed=0
  # every backup first: if one fails, nothing on the host has changed yet
  i=0
  while IFS=' ' read -r _ _ _ _ _ p <&3; do
    k=$(mtm_key "$p")
    mtm_keep_original "$p" "$k" || mtm_abort "could not back up $p"
    mtm_keep_previous "$p" "$i" || mtm_abort "could not back up $p"
    i=$((i + 1))
  done 3< "$tmp/list"
  installing=1
  i=0
  while IFS=' ' read -r _ mode who_group _ _ p <&3; do
    user=${who_group%%:*} group=${who_group#*:}
    want="$(printf '%o' "0$mode") $user $group"
    if ! mtm_same_file "$tmp/new.$i" "$p" "$want"; then
      changed=1
      { mtm_mkdirs "$p" &&
        install -m "$mode" -o "$user" -g "$group" "$tmp/new.$i" "$p.mtm-new" &&
        mv -f "$p.mtm-new" "$p"; } || mtm_abort "could not install $p"
    fi
    i=$((i + 1))
  done 3< "$tmp/list"
  mtm_orphans_restore || mtm_abort 'could not put back the original of a path it no longer manages'
  if [ -s "$tmp/orphans" ]; then changed=1; fi
  if [ "$changed" = 1 ]; then
    mtm_apply_or_rollback
  fi
  while IFS= read -r k <&3; do printf '%s\n' "$who" > "$state/owners/$k"; done 3< "$tmp/keys"
  if [ -s "$tmp/orphans" ]; then
    mtm_orphans_forget
    mtm_cleanup_dirs
  fi
  if [ "$changed" = 1 ]; then echo "$who: changed"; else echo "$who: unchanged"; fi
}

files_restore() {
  # the originals of the files this owner still owns back, then re-activate
  restored=0
  : > "$tmp/keys"
  while IFS=' ' read -r _ _ _ _ _ p <&3; do
    k=$(mtm_key "$p")
    printf '%s\n' "$k" >> "$tmp/keys"
    b="$state/backup/$k"
    if [ "$(cat "$state/owners/$k" 2>/dev/null || true)" != "$who" ]; then
      echo "$who: $p belongs to another resource now; left as it is"
    else
      if [ -e "$b.absent" ]; then rm -f "$p"
      elif [ -e "$b.orig" ] || [ -L "$b.orig" ]; then cp -a "$b.orig" "$p.mtm-restore" && mv -f "$p.mtm-restore" "$p"
      fi
      rm -f "$b.orig" "$b.absent" "$b.path" "$state/owners/$k"
      restored=1
    fi
  done 3< "$tmp/list"
  # anything else still in this owner's name (a path an older version of it installed)
  mtm_orphans_restore || mtm_fail "$who: could not put back the original of a path it no longer manages"
  if [ -s "$tmp/orphans" ]; then restored=1; fi
  if [ "$restored" = 1 ]; then
    mtm_hook restore-activate
    echo "$who: restored"
  fi
  mtm_orphans_forget
  mtm_cleanup_dirs
}

# ---------------------------------------------------------------------------------- blocks
mtm_block_entry() {
  [ "$(wc -l < "$tmp/list")" -eq 1 ] || mtm_fail "$who: a block input names exactly one block"
  IFS=' ' read -r kind comment position _ _ p < "$tmp/list"
  [ "$kind" = block ] || mtm_fail "$who: $op got a $kind entry"
  begin="$comment BEGIN mattermost-transport-encryption $who"
  end="$comment END mattermost-transport-encryption $who"
  k=$(mtm_key "$p")
  b="$state/backup/$k"
}

mtm_without_block() {
  # $1 file: its lines without our block, to $tmp/rest
  awk -v b="$begin" -v e="$end" '$0==b{s=1;next} s&&$0==e{s=0;next} !s' "$1" > "$tmp/rest"
}

block_apply() {
  mtm_block_entry
  case "$position" in top | bottom) ;; *) mtm_fail "$who: position must be top or bottom: $position" ;; esac
  [ -f "$p" ] || mtm_fail "$who: $p does not exist; it must exist before a block can be added"
  mtm_contents
  mtm_keep_original "$p" "$k" || mtm_abort "could not back up $p"
  mtm_keep_previous "$p" 0 || mtm_abort "could not back up $p"
  { cat "$tmp/new.0"; if [ -n "$(tail -c 1 "$tmp/new.0")" ]; then echo; fi; } > "$tmp/body"
  if grep -qxF "$begin" "$p"; then
    # our block is there: new lines where it stands (another owner's block may have been put
    # above it since; moving ours would change the file for nothing)
    awk -v b="$begin" -v e="$end" -v body="$tmp/body" \
      '$0==b{print; while ((getline l < body) > 0) print l; s=1; next} s&&$0==e{s=0; print; next} !s' "$p" > "$tmp/next"
    if [ -n "$(tail -c 1 "$p")" ]; then truncate -s -1 "$tmp/next"; fi
  else
    mtm_without_block "$p"
    # awk ends every line with a newline; give back the file's own last byte
    if [ -s "$p" ] && [ -n "$(tail -c 1 "$p")" ]; then truncate -s -1 "$tmp/rest"; fi
    nonl=0
    # appending after a last line without newline adds one; delete takes it away again
    if [ "$position" = bottom ] && [ -s "$tmp/rest" ] && [ -n "$(tail -c 1 "$tmp/rest")" ]; then nonl=1; fi
    if [ "$nonl" = 1 ]; then : > "$b.nonl"; fi
    {
      if [ "$position" = bottom ]; then
        cat "$tmp/rest"
        if [ "$nonl" = 1 ]; then echo; fi
      fi
      printf '%s\n' "$begin"
      cat "$tmp/body"
      printf '%s\n' "$end"
      if [ "$position" = top ]; then cat "$tmp/rest"; fi
    } > "$tmp/next"
  fi
  changed=0
  if ! cmp -s "$tmp/next" "$p"; then
    changed=1
    installing=1
    # cp onto the existing inode's copy keeps the file's mode and owner
    { cp -a "$p" "$p.mtm-new" &&
      cat "$tmp/next" > "$p.mtm-new" &&
      mv -f "$p.mtm-new" "$p"; } || mtm_abort "could not write $p"
    mtm_apply_or_rollback
  fi
  printf '%s\n' "$who" > "$state/owners/$k.$(mtm_key "$who")"
  if [ "$changed" = 1 ]; then echo "$who: changed"; else echo "$who: unchanged"; fi
}

block_restore() {
  # remove exactly this owner's block, leaving the rest of the file as it is
  mtm_block_entry
  ledger="$state/owners/$k.$(mtm_key "$who")"
  if [ -f "$p" ] && grep -qxF "$begin" "$p"; then
    mtm_without_block "$p"
    # awk added a newline the file did not end with, or we added one before our block
    if [ -s "$tmp/rest" ] && { [ -n "$(tail -c 1 "$p")" ] || [ -e "$b.nonl" ]; }; then
      truncate -s -1 "$tmp/rest"
    fi
    cp -a "$p" "$p.mtm-restore"
    cat "$tmp/rest" > "$p.mtm-restore"
    mv -f "$p.mtm-restore" "$p"
    rm -f "$b.orig" "$b.absent" "$b.path" "$b.nonl" "$ledger"
    mtm_hook restore-activate
    echo "$who: block removed"
  else
    rm -f "$ledger"
    echo "$who: no block to remove"
  fi
  mtm_cleanup_dirs
}

# ------------------------------------------------------------------------------------ run
run_script() {
  # $1 create|update|delete: that section, its stdin the input section
  script="$tmp/s.$1"
  if [ ! -e "$script" ] && [ "$1" = update ]; then script="$tmp/s.create"; fi
  [ -e "$script" ] || mtm_fail "$who: the input has no $1 script"
  if [ -e "$tmp/s.input" ]; then input="$tmp/s.input"; else input=/dev/null; fi
  # the script's exit status is the command's; the lock's descriptor stays with this process
  (umask "$caller_umask" && exec sh -eu "$script" < "$input" 9>&-)
}

mtm_parse
case "$op" in
  files-apply) files_apply ;;
  files-restore) files_restore ;;
  block-apply) block_apply ;;
  block-restore) block_restore ;;
  run-create) run_script create ;;
  run-update) run_script update ;;
  run-delete) run_script delete ;;
esac

# ==================================================== the library (data: comments, see above)
# Written by tools/helper_library.py: one "#@lib ID BYTES" line per entry, then its lines, each
# prefixed "#|". Entries are only ever added.
#@lib c90ca799137696a5 1144
#|set -eu
#|export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#|user=mmtunnel
#|home=/var/lib/mmtunnel
#|marker=/var/lib/mattermost-transport-encryption/cluster-account-mmtunnel
#|state=/var/lib/mattermost-transport-encryption
#|nologin=/usr/sbin/nologin
#|if getent passwd "$user" >/dev/null; then
#|  if [ ! -e "$marker" ]; then
#|    shell=$(getent passwd "$user" | cut -d: -f7)
#|    case "$shell" in
#|      */nologin|*/false) echo "$user: existing account without a login shell, used as it is" ;;
#|      *) echo "account $user already exists with the login shell $shell; it must not be the tunnel account: set cluster.tunnelUser to an unused name (the default is mmtunnel)" >&2; exit 1 ;;
#|    esac
#|  fi
#|else
#|  mkdir -p "$marker.orig"
#|  chmod 0700 "$state" "$marker.orig"
#|  for f in passwd- group- shadow- gshadow-; do
#|    if [ -e "/etc/$f" ]; then cp -a "/etc/$f" "$marker.orig/$f"; else : > "$marker.orig/$f.absent"; fi
#|  done
#|  useradd --system --user-group --home-dir "$home" --create-home --shell "$nologin" --comment "Mattermost cluster SSH tunnels" "$user"
#|  usermod -p '*' "$user"
#|  : > "$marker"
#|  echo "$user: created"
#|fi
#@lib dca0e57a2362a2be 693
#|set -eu
#|export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#|user=mmtunnel
#|marker=/var/lib/mattermost-transport-encryption/cluster-account-mmtunnel
#|state=/var/lib/mattermost-transport-encryption
#|if [ -e "$marker" ]; then
#|  if getent passwd "$user" >/dev/null; then
#|    pkill -u "$user" 2>/dev/null || true
#|    userdel --remove "$user" 2>/dev/null || userdel "$user"
#|  fi
#|  for f in passwd- group- shadow- gshadow-; do
#|    if [ -e "$marker.orig/$f" ]; then cp -a "$marker.orig/$f" "/etc/$f"; fi
#|    if [ -e "$marker.orig/$f.absent" ]; then rm -f "/etc/$f"; fi
#|  done
#|  rm -rf "$marker" "$marker.orig"
#|  rmdir "$state" 2>/dev/null || true
#|  echo "$user: removed"
#|fi
#@lib 8660e1ea1f5c8cea 1320
#|systemctl daemon-reload
#|if [ -e /etc/systemd/system/mm-cluster-firewall.service ]; then
#|  if systemctl is-active --quiet mm-cluster-firewall.service; then systemctl reload mm-cluster-firewall.service; else systemctl start mm-cluster-firewall.service; fi
#|  iptables -w -t nat -C OUTPUT -j MMTLS-CLUSTER-NAT
#|  iptables -w -t filter -C INPUT -j MMTLS-CLUSTER-IN
#|else
#|  systemctl stop mm-cluster-firewall.service 2>/dev/null || true
#|  systemctl reset-failed mm-cluster-firewall.service 2>/dev/null || true
#|  while iptables -w -t nat -D OUTPUT -j MMTLS-CLUSTER-NAT 2>/dev/null; do :; done
#|  while iptables -w -t filter -D INPUT -j MMTLS-CLUSTER-IN 2>/dev/null; do :; done
#|  if iptables -w -t nat -n -L MMTLS-CLUSTER-NAT >/dev/null 2>&1; then iptables -w -t nat -F MMTLS-CLUSTER-NAT; iptables -w -t nat -X MMTLS-CLUSTER-NAT; fi
#|  if iptables -w -t filter -n -L MMTLS-CLUSTER-IN >/dev/null 2>&1; then iptables -w -t filter -F MMTLS-CLUSTER-IN; iptables -w -t filter -X MMTLS-CLUSTER-IN; fi
#|fi
#|systemctl daemon-reload
#|if [ -e /etc/systemd/system/mm-cluster-tunnels.target ]; then
#|  systemctl start mm-cluster-heal.timer
#|else
#|  systemctl stop mm-cluster-heal.timer mm-cluster-heal.service mm-cluster-tunnels.target 2>/dev/null || true
#|  systemctl reset-failed mm-cluster-heal.timer mm-cluster-heal.service 2>/dev/null || true
#|fi
#@lib 882635e68434c804 9034
#|#!/bin/sh
#|# Managed by mattermost-transport-encryption (cluster tunnels); `pulumi destroy` removes it.
#|#
#|# mm-cluster start|reload   load /etc/mattermost-cluster/firewall.rules (our chains are declared there, so
#|#                           iptables-restore -n replaces their whole content at once), then
#|#                           make sure exactly one jump to each chain sits first in its builtin
#|# mm-cluster stop           remove the jumps and the chains
#|# mm-cluster check [FILE]   iptables-restore --test of the rules
#|# mm-cluster wait-listen SECONDS PORT...
#|#                           wait until 127.0.0.1:PORT listen, i.e. ssh is logged in to the
#|#                           pinned peer; fail early if ssh ($MAINPID) exits
#|# mm-cluster tunnel PEER    (mm-tunnel@PEER's ExecStart) exec ssh from PEER's line in /etc/mattermost-cluster/tunnels,
#|#                           with AES-GCM first where the CPU has AES instructions
#|# mm-cluster wait-tunnel PEER SECONDS
#|#                           (its ExecStartPost) wait-listen on PEER's local ports
#|# mm-cluster tunnels-apply  restart the tunnels whose line changed, stop the ones not listed
#|# mm-cluster drift          print what differs from the installed files (exit 1 if anything)
#|# mm-cluster heal           (mm-cluster-heal.timer) put back what drifted, without restarting
#|#                           anything that runs: the firewall unit is reloaded, never restarted
#|set -eu
#|export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#|rules=/etc/mattermost-cluster/firewall.rules
#|nat_chain=MMTLS-CLUSTER-NAT
#|in_chain=MMTLS-CLUSTER-IN
#|table=/etc/mattermost-cluster/tunnels
#|template=/etc/systemd/system/mm-tunnel@.service
#|firewall_unit=mm-cluster-firewall.service
#|aes_ciphers=aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-gcm@openssh.com
#|ssh_bin=/usr/bin/ssh
#|client_key=/etc/mattermost-cluster/id_ed25519
#|
#|fail() { printf 'mm-cluster: %s\n' "$*" >&2; exit 1; }
#|
#|tunnel_line() {
#|  # $1 peer: its line of the table, empty if none
#|  [ -r "$table" ] || return 0
#|  awk -v p="$1" '$1 == p' "$table"
#|}
#|
#|peers() {
#|  [ -r "$table" ] || return 0
#|  awk '$1 !~ /^#/ && NF { print $1 }' "$table"
#|}
#|
#|wait_listen() {
#|  secs=$1
#|  shift
#|  tries=0
#|  while :; do
#|    missing=""
#|    for port in "$@"; do
#|      if [ -z "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then missing="$missing $port"; fi
#|    done
#|    [ -n "$missing" ] || return 0
#|    if [ -n "${MAINPID:-}" ] && [ ! -d "/proc/$MAINPID" ]; then
#|      fail "ssh exited before 127.0.0.1:$missing listened"
#|    fi
#|    [ "$tries" -lt $((secs * 10)) ] || fail "127.0.0.1:$missing not listening after ${secs}s"
#|    sleep 0.1
#|    tries=$((tries + 1))
#|  done
#|}
#|
#|expected_chain() {
#|  # $1 table, $2 chain: the rules of that chain in the rules file, as iptables -S prints them
#|  awk -v t="*$1" -v c="$2" '$0 == t { s = 1; next } s && $0 == "COMMIT" { s = 0 } s && $1 == "-A" && $2 == c' "$rules"
#|}
#|
#|drift() {
#|  # one line per item that differs from the installed files
#|  if [ -r "$rules" ] && systemctl is-active --quiet "$firewall_unit"; then
#|    for spec in "nat $nat_chain OUTPUT" "filter $in_chain INPUT"; do
#|      set -- $spec
#|      iptables -w -t "$1" -C "$3" -j "$2" 2>/dev/null || echo "firewall: no jump from $1 $3 to $2"
#|      now=$(iptables -w -t "$1" -S "$2" 2>/dev/null | grep -- '^-A ' || true)
#|      [ "$now" = "$(expected_chain "$1" "$2")" ] || echo "firewall: chain $2 differs from $rules"
#|    done
#|  fi
#|  if [ -e "$template" ]; then
#|    for peer in $(peers); do
#|      systemctl is-active --quiet "mm-tunnel@$peer.service" || echo "tunnel: mm-tunnel@$peer.service is not running"
#|    done
#|  fi
#|}
#|
#|jump() {
#|  # $1 table, $2 builtin chain, $3 our chain
#|  if ! iptables -w -t "$1" -C "$2" -j "$3" 2>/dev/null; then
#|    iptables -w -t "$1" -I "$2" 1 -j "$3"
#|  fi
#|}
#|
#|case "${1:-}" in
#|start|reload)
#|  [ -r "$rules" ] || fail "$rules is missing"
#|  iptables-restore -w -n < "$rules"
#|  jump nat OUTPUT "$nat_chain"
#|  jump filter INPUT "$in_chain"
#|  ;;
#|stop)
#|while iptables -w -t nat -D OUTPUT -j MMTLS-CLUSTER-NAT 2>/dev/null; do :; done
#|while iptables -w -t filter -D INPUT -j MMTLS-CLUSTER-IN 2>/dev/null; do :; done
#|if iptables -w -t nat -n -L MMTLS-CLUSTER-NAT >/dev/null 2>&1; then iptables -w -t nat -F MMTLS-CLUSTER-NAT; iptables -w -t nat -X MMTLS-CLUSTER-NAT; fi
#|if iptables -w -t filter -n -L MMTLS-CLUSTER-IN >/dev/null 2>&1; then iptables -w -t filter -F MMTLS-CLUSTER-IN; iptables -w -t filter -X MMTLS-CLUSTER-IN; fi
#|  ;;
#|check)
#|  iptables-restore -w --test -n < "${2:-$rules}"
#|  ;;
#|wait-listen)
#|  [ "$#" -ge 3 ] || fail "usage: mm-cluster wait-listen SECONDS PORT..."
#|  shift
#|  wait_listen "$@"
#|  ;;
#|tunnel)
#|  [ "$#" -eq 2 ] || fail "usage: mm-cluster tunnel PEER"
#|  line=$(tunnel_line "$2")
#|  [ -n "$line" ] || fail "no tunnel to $2 in $table"
#|  # what this instance runs, for tunnels-apply to compare with the table
#|  if [ -n "${RUNTIME_DIRECTORY:-}" ]; then printf '%s\n' "$line" > "$RUNTIME_DIRECTORY/line"; fi
#|  set -f
#|  set -- $line
#|  case "$4" in
#|  /*)
#|    # a line of the table before it held only the per-peer values: its argv from field 4 on
#|    shift 3
#|    ;;
#|  *)
#|    # peer local-ports host-key host-key-type user@address ssh-port remote-ports
#|    peer=$1 locals=$2 key=$3 ktype=$4 dest=$5 port=$6 remotes=$7
#|    # the pin, from the table (the only file holding it) into the instance's runtime directory
#|    [ -n "${RUNTIME_DIRECTORY:-}" ] || fail "tunnel $peer: no RuntimeDirectory (run it as mm-tunnel@$peer.service)"
#|    known_hosts=$RUNTIME_DIRECTORY/known_hosts
#|    printf 'mm-cluster-%s %s %s\n' "$peer" "$ktype" "$key" > "$known_hosts"
#|    # an RSA pin is used with SHA-2 signatures only, never ssh-rsa (SHA-1)
#|    case "$ktype" in ssh-rsa) algs=rsa-sha2-512,rsa-sha2-256 ;; *) algs=$ktype ;; esac
#|    set -- "$ssh_bin" -F none -N -T -o BatchMode=yes -o IdentitiesOnly=yes -o "IdentityFile=$client_key" \
#|      -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$known_hosts" -o GlobalKnownHostsFile=/dev/null \
#|      -o "HostKeyAlias=mm-cluster-$peer" -o "HostKeyAlgorithms=$algs" -o UpdateHostKeys=no -o CheckHostIP=no \
#|      -o ExitOnForwardFailure=yes -o ServerAliveInterval=15 -o ServerAliveCountMax=3 -o ConnectTimeout=10 -p "$port"
#|    # the i-th local port forwards to the i-th remote port of the peer
#|    while [ -n "$locals" ]; do
#|      [ -n "$remotes" ] || fail "$table: $peer has more local than remote ports"
#|      set -- "$@" -L "127.0.0.1:${locals%%,*}:${dest#*@}:${remotes%%,*}"
#|      case "$locals" in *,*) locals=${locals#*,} ;; *) locals="" ;; esac
#|      case "$remotes" in *,*) remotes=${remotes#*,} ;; *) remotes="" ;; esac
#|    done
#|    [ -z "$remotes" ] || fail "$table: $peer has more remote than local ports"
#|    set -- "$@" "$dest"
#|    ;;
#|  esac
#|  bin=$1
#|  shift
#|  if grep -qw aes /proc/cpuinfo 2>/dev/null; then exec "$bin" -o "Ciphers=$aes_ciphers" "$@"; fi
#|  exec "$bin" "$@"
#|  ;;
#|wait-tunnel)
#|  [ "$#" -eq 3 ] || fail "usage: mm-cluster wait-tunnel PEER SECONDS"
#|  line=$(tunnel_line "$2")
#|  [ -n "$line" ] || fail "no tunnel to $2 in $table"
#|  ports=$(printf '%s\n' "$line" | awk '{ print $2 }' | tr ',' ' ')
#|  wait_listen "$3" $ports
#|  ;;
#|tunnels-apply)
#|  for u in $(systemctl list-units --all --plain --no-legend 'mm-tunnel@*.service' | awk '{ print $1 }'); do
#|    peer=${u#mm-tunnel@}
#|    peer=${peer%.service}
#|    if [ ! -e "$template" ] || [ -z "$(tunnel_line "$peer")" ]; then
#|      systemctl stop "$u" 2>/dev/null || true
#|      systemctl reset-failed "$u" 2>/dev/null || true
#|      echo "mm-cluster: $u stopped (no longer a peer)"
#|    fi
#|  done
#|  [ -e "$template" ] || exit 0
#|  todo=""
#|  for peer in $(peers); do
#|    # the per-pair unit of the earlier design holds the same local ports: it makes way
#|    if systemctl is-active --quiet "mm-tunnel-$peer.service"; then systemctl stop "mm-tunnel-$peer.service"; fi
#|    u="mm-tunnel@$peer.service"
#|    if systemctl is-active --quiet "$u" && [ "$(cat "/run/mm-tunnel-$peer/line" 2>/dev/null || true)" = "$(tunnel_line "$peer")" ]; then
#|      continue
#|    fi
#|    todo="$todo $u"
#|  done
#|  [ -n "$todo" ] || exit 0
#|  # all at once: systemd runs the jobs in parallel and waits for every one
#|  systemctl restart $todo || true
#|  failed=""
#|  for u in $todo; do
#|    if ! systemctl is-active --quiet "$u"; then
#|      journalctl -u "$u" -n 20 --no-pager >&2 || true
#|      systemctl stop "$u" 2>/dev/null || true
#|      failed="$failed $u"
#|    fi
#|  done
#|  [ -z "$failed" ] || fail "did not come up:$failed (journal above)"
#|  echo "mm-cluster: (re)started$todo"
#|  ;;
#|drift)
#|  out=$(drift)
#|  [ -n "$out" ] || exit 0
#|  printf '%s\n' "$out"
#|  exit 1
#|  ;;
#|heal)
#|  out=$(drift)
#|  [ -n "$out" ] || exit 0
#|  printf 'mm-cluster: drift: %s\n' "$out" >&2
#|  if printf '%s\n' "$out" | grep -q '^firewall:'; then systemctl reload "$firewall_unit"; fi
#|  for peer in $(peers); do
#|    systemctl start --no-block "mm-tunnel@$peer.service"
#|  done
#|  ;;
#|*)
#|  fail "usage: mm-cluster start|reload|stop|check [FILE]|wait-listen SECONDS PORT...|tunnel PEER|wait-tunnel PEER SECONDS|tunnels-apply|drift|heal"
#|  ;;
#|esac
#@lib 12aa5f6534702adc 475
#|# Managed by mattermost-transport-encryption (cluster tunnels); `pulumi destroy` removes it.
#|[Unit]
#|Description=Mattermost cluster firewall: TCP gossip into the SSH tunnels, gossip ports for peers only
#|After=ufw.service netfilter-persistent.service
#|Before=mattermost.service mm-cluster-tunnels.target
#|
#|[Service]
#|Type=oneshot
#|RemainAfterExit=yes
#|ExecStart=/usr/local/sbin/mm-cluster start
#|ExecReload=/usr/local/sbin/mm-cluster reload
#|ExecStop=-/usr/local/sbin/mm-cluster stop
#@lib cf61ad8c6aa4c7ce 295
#|# Managed by mattermost-transport-encryption (cluster tunnels); `pulumi destroy` removes it.
#|[Unit]
#|Description=Mattermost cluster drift check: puts back a flushed DNAT chain or a stopped tunnel
#|After=mm-cluster-firewall.service
#|
#|[Service]
#|Type=oneshot
#|ExecStart=/usr/local/sbin/mm-cluster heal
#@lib 1446eb650d87a1b8 1320
#|systemctl daemon-reload
#|if [ -e /etc/systemd/system/mm-cluster-tunnels.target ]; then
#|  systemctl start mm-cluster-heal.timer
#|else
#|  systemctl stop mm-cluster-heal.timer mm-cluster-heal.service mm-cluster-tunnels.target 2>/dev/null || true
#|  systemctl reset-failed mm-cluster-heal.timer mm-cluster-heal.service 2>/dev/null || true
#|fi
#|systemctl daemon-reload
#|if [ -e /etc/systemd/system/mm-cluster-firewall.service ]; then
#|  if systemctl is-active --quiet mm-cluster-firewall.service; then systemctl reload mm-cluster-firewall.service; else systemctl start mm-cluster-firewall.service; fi
#|  iptables -w -t nat -C OUTPUT -j MMTLS-CLUSTER-NAT
#|  iptables -w -t filter -C INPUT -j MMTLS-CLUSTER-IN
#|else
#|  systemctl stop mm-cluster-firewall.service 2>/dev/null || true
#|  systemctl reset-failed mm-cluster-firewall.service 2>/dev/null || true
#|  while iptables -w -t nat -D OUTPUT -j MMTLS-CLUSTER-NAT 2>/dev/null; do :; done
#|  while iptables -w -t filter -D INPUT -j MMTLS-CLUSTER-IN 2>/dev/null; do :; done
#|  if iptables -w -t nat -n -L MMTLS-CLUSTER-NAT >/dev/null 2>&1; then iptables -w -t nat -F MMTLS-CLUSTER-NAT; iptables -w -t nat -X MMTLS-CLUSTER-NAT; fi
#|  if iptables -w -t filter -n -L MMTLS-CLUSTER-IN >/dev/null 2>&1; then iptables -w -t filter -F MMTLS-CLUSTER-IN; iptables -w -t filter -X MMTLS-CLUSTER-IN; fi
#|fi
#@lib a08d0618f76b6ab2 1051
#|set -eu
#|export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#|unit=mattermost.service
#|want=true
#|new=MM_CLUSTERSETTINGS_ENABLEGOSSIPENCRYPTION
#|old=MM_CLUSTERSETTINGS_ENABLEEXPERIMENTALGOSSIPENCRYPTION
#|pid=$(systemctl show -p MainPID --value "$unit" 2>/dev/null || echo 0)
#|if [ -z "$pid" ] || [ "$pid" = 0 ] || [ ! -r "/proc/$pid/environ" ]; then
#|  echo "$unit: not running; its restart will use gossip encryption=$want"
#|  exit 0
#|fi
#|if tr '\000' '\n' < "/proc/$pid/environ" | grep -qxE "($new|$old)=$want"; then
#|  echo "$unit: already running with gossip encryption=$want"
#|  exit 0
#|fi
#|if command -v ss >/dev/null 2>&1 && ! ss -Hlunp 2>/dev/null | grep -q "pid=$pid,"; then
#|  echo "$unit: not gossiping (clustering is off in the running server): no mode to mix, left running; its restart brings it into the cluster with gossip encryption=$want"
#|  exit 0
#|fi
#|echo "$unit: stopping for the switch to gossip encryption=$want (nodes cannot mix modes; every node stops, each comes back with its own restart)"
#|systemctl stop "$unit"
#@lib bca77bb95d55b9ae 3866
#|unit=mattermost
#|ports=8074
#|ours=/etc/mattermost-cluster/id_ed25519
#|nat_chain=MMTLS-CLUSTER-NAT
#|# Preflight of the cluster tunnels (read-only). Parameters set above: node, unit, ports,
#|# ours (our tunnel key: processes using it are ours), nat_chain.
#|# Finds what the manual SSH-tunnel procedure leaves on a host and stops with the exact steps to
#|# remove it: its DNAT lines would sit beside ours (two DNAT rules for one port), and its
#|# `ssh -f` tunnels and pre_start.sh would keep running beside our supervised ones.
#|found=$(mktemp)
#|trap 'rm -f "$found" "$found.pre"' EXIT
#|say() { printf '  - %s\n' "$*" >> "$found"; }
#|
#|missing=""
#|for tool in ssh sshd iptables iptables-restore systemctl ss useradd ps journalctl; do
#|  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
#|done
#|if [ -n "$missing" ]; then
#|  say "missing tools:$missing (Debian: apt-get install openssh-client openssh-server iptables iproute2 procps passwd)"
#|fi
#|
#|# any of our tunnelled ports as a DNAT match: --dport 8074 / --dport=8074
#|portre=$(printf '%s\n' $ports | paste -sd '|' -)
#|
#|# 1. ExecStartPre that starts tunnels (pre_start.sh)
#|if systemctl cat "$unit.service" >/dev/null 2>&1; then
#|  systemctl cat "$unit.service" 2>/dev/null | awk '/^# \//{file=$2} /^ExecStartPre=/{print file "\t" $0}' > "$found.pre" || true
#|  while IFS="$(printf '\t')" read -r file line; do
#|    cmd=$(printf '%s' "${line#ExecStartPre=}" | sed 's/^[-@:+!]*//')
#|    prog=${cmd%% *}
#|    if printf '%s\n' "$cmd" | grep -Eq '(^|[/ ])ssh .*-L' \
#|      || { [ -f "$prog" ] && grep -Eq '(^|[^A-Za-z])ssh .*-L' "$prog"; }; then
#|      say "$file: '$line' starts SSH tunnels before Mattermost (the manual procedure's pre_start.sh). Remove that line (or the drop-in adding it), run 'systemctl daemon-reload', and delete $prog if nothing else uses it."
#|    fi
#|  done < "$found.pre"
#|  rm -f "$found.pre"
#|fi
#|
#|# 2. DNAT lines for our ports in the firewall files
#|for f in /etc/ufw/before.rules /etc/ufw/after.rules /etc/iptables/rules.v4; do
#|  [ -f "$f" ] || continue
#|  grep -nE -- "-j[[:space:]]+DNAT" "$f" 2>/dev/null | grep -E -- "--dport[ =]+($portre)([^0-9]|$)" | while IFS= read -r hit; do
#|    say "$f line ${hit%%:*}: '${hit#*:}' (a DNAT of a gossip port from the manual procedure). Delete that line, and its '*nat' and 'COMMIT' lines if nothing else is left between them."
#|  done
#|done
#|
#|# 3. the same rules live in the kernel
#|if command -v iptables >/dev/null 2>&1; then
#|  iptables -w -t nat -S OUTPUT 2>/dev/null | grep -E -- "-j[[:space:]]+DNAT" | grep -E -- "--dport[ =]+($portre)([^0-9]|$)" | while IFS= read -r rule; do
#|    say "live rule '$rule'. Remove it: iptables -t nat $(printf '%s' "$rule" | sed 's/^-A /-D /')"
#|  done
#|fi
#|
#|# 4. ssh tunnels to a gossip port that are not ours
#|# -ww: never cut the command line to $COLUMNS (ps honours it even into a pipe)
#|ps -ww -eo pid=,args= 2>/dev/null | grep -E '(^|[/ ])ssh .*-L' | grep -E -- ":($portre)([^0-9]|$)" | grep -vF -- "$ours" | while read -r pid args; do
#|  case "$args" in *grep*) continue ;; esac
#|  say "process $pid '$args' is an SSH tunnel to a gossip port (manual procedure). Stop it: kill $pid"
#|done
#|
#|# 5. a ufw that flushes the builtin chains on every reload would drop our jumps
#|if grep -qiE '^[[:space:]]*MANAGE_BUILTINS[[:space:]]*=[[:space:]]*"?yes' /etc/default/ufw 2>/dev/null; then
#|  say "/etc/default/ufw has MANAGE_BUILTINS=yes: every 'ufw reload' would flush nat OUTPUT and INPUT, including the jumps to $nat_chain. Set MANAGE_BUILTINS=no."
#|fi
#|
#|if [ -s "$found" ]; then
#|  {
#|    echo "node $node: refusing to set up the cluster tunnels: this host still carries the manual SSH-tunnel procedure (or something in its way)."
#|    echo "Remove the following, then run 'pulumi up' again (nothing has been changed on this host):"
#|    cat "$found"
#|  } >&2
#|  exit 1
#|fi
#|echo "node $node: no manual tunnel procedure found; ready for the cluster tunnels"
#@lib 60ccd299f11049d7 463
#|Wants=network-online.target
#|After=network-online.target mm-cluster-firewall.service
#|Before=mattermost.service mm-cluster-tunnels.target
#|PartOf=mm-cluster-tunnels.target
#|StartLimitIntervalSec=0
#|
#|[Service]
#|Type=simple
#|User=mmtunnel
#|Group=mmtunnel
#|RuntimeDirectory=mm-tunnel-%i
#|ExecStart=/usr/local/sbin/mm-cluster tunnel %i
#|ExecStartPost=/usr/local/sbin/mm-cluster wait-tunnel %i 15
#|Restart=always
#|RestartSec=2
#|NoNewPrivileges=yes
#|PrivateTmp=yes
#|ProtectSystem=full
#@lib 85cc5253db31407e 328
#|mtm_node_fail() { printf '%s\n' "$1" >&2; exit 1; }
#|if command -v update-ca-certificates >/dev/null 2>&1; then
#|  update-ca-certificates
#|else
#|  mtm_node_fail "update-ca-certificates is not installed; the database driver verifies the server with the system trust store, so the CA must be added there (install ca-certificates)"
#|fi
#@lib 77eaf95265c76a31 394
#|if command -v update-ca-certificates >/dev/null 2>&1; then
#|  update-ca-certificates || printf '%s\n' "warning: update-ca-certificates failed" >&2
#|fi
#|for link in /etc/ssl/certs/*; do
#|  if [ -L "$link" ] && [ ! -e "$link" ]; then
#|    case "$(readlink "$link")" in
#|      mattermost-transport-ca.pem|/usr/local/share/ca-certificates/mattermost-transport-ca.crt) rm -f "$link" ;;
#|    esac
#|  fi
#|done
#@lib 33bebc3cdce0d7e7 935
#|cd /
#|mtm_out=$({ srv=$(command -v mariadbd || command -v mysqld) && "$srv" --help --verbose; } 2>/dev/null) || { echo 'the server rejects its configuration'; exit 1; }
#|case "$(printf '%s\n' "$mtm_out" | awk '$1 == "require-secure-transport" { print $2 }')" in
#|  TRUE|ON|1) mtm_v=ON ;;
#|  *) mtm_v=OFF ;;
#|esac
#|if [ -e /etc/mysql/mysql.conf.d/91-mattermost-tls-enforce.cnf ] && [ "$mtm_v" != ON ]; then
#|  echo "the server would not use "/etc/mysql/mysql.conf.d/91-mattermost-tls-enforce.cnf" as written (a later option file overrides it?)"; exit 1
#|fi
#|mysql --protocol=socket -e "SET GLOBAL require_secure_transport = $mtm_v" </dev/null
#|mtm_now=$(mysql --protocol=socket -N -B -r -e "SELECT @@GLOBAL.require_secure_transport" </dev/null)
#|case "$mtm_now" in 1|ON) mtm_now=ON ;; *) mtm_now=OFF ;; esac
#|[ "$mtm_now" = "$mtm_v" ] || { echo "require_secure_transport is $mtm_now, not $mtm_v"; exit 1; }
#|echo "require_secure_transport = $mtm_v"
#@lib 975e1118b53d55ac 664
#|cd /
#|systemctl reload postgresql@15-main
#|if ! grep -qxF 'hostnossl all "mmuser" all reject' /etc/postgresql/15/main/pg_hba.conf; then echo 'reloaded'; exit 0; fi
#|mtm_n=0
#|while :; do
#|  mtm_out=$(psql -X -w 'host='"'"'10.20.9.1'"'"' port='"'"'5432'"'"' user='"'"'mmuser'"'"' dbname='"'"'mattermost'"'"' sslmode='"'"'disable'"'"' connect_timeout='"'"'10'"'"'' -c '' 2>&1 </dev/null || true)
#|  case "$mtm_out" in *"no encryption"*) break ;; esac
#|  mtm_n=$((mtm_n + 1))
#|  if [ "$mtm_n" -ge 60 ]; then
#|    echo "a plain login of "mmuser" is not refused after the reload:"; printf '%s\n' "$mtm_out"; exit 1
#|  fi
#|  sleep 1
#|done
#|echo "plain logins of "mmuser" are refused"
#@lib fbcb25f708e23660 857
#|cd /
#|if mtm_out=$(runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p 5432 -d postgres -At -c 'SELECT setting FROM pg_catalog.pg_settings WHERE name = '"'"'hba_file'"'"'' 2>&1 </dev/null); then
#|  if [ "$mtm_out" != /etc/postgresql/15/main/pg_hba.conf ]; then
#|    echo "the server reads $mtm_out, not "/etc/postgresql/15/main/pg_hba.conf": set database.configDir to the cluster's directory"; exit 1
#|  fi
#|  mtm_out=$(runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p 5432 -d postgres -At -c 'SELECT line_number || '"'"': '"'"' || error FROM pg_catalog.pg_hba_file_rules WHERE error IS NOT NULL ORDER BY line_number' </dev/null)
#|  if [ -n "$mtm_out" ]; then echo "pg_hba.conf has errors:"; printf '%s\n' "$mtm_out"; exit 1; fi
#|else
#|  echo "note: could not ask the running server to check pg_hba.conf"
#|fi
#@lib eb399b264ce44b3f 820
#|set -eu
#|export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#|umask 077
#|unit=mattermost.service
#|cfg=/opt/mattermost/config/config.json
#|envfile=/etc/mattermost-tls/mattermost.env
#|b64() { base64 | tr -d '\n'; echo; }
#|proc=''
#|pid=$(systemctl show -p MainPID --value "$unit" 2>/dev/null || true)
#|case "$pid" in ''|0|*[!0-9]*) pid='' ;; esac
#|if [ -n "$pid" ] && [ -r "/proc/$pid/environ" ]; then
#|  proc=$(tr '\000' '\n' < "/proc/$pid/environ" | grep -i '^mm_sqlsettings_' || true)
#|  own=$(tr '\000' '\n' < "/proc/$pid/environ" | sed -n 's/^MM_CONFIG=//p' | head -n 1)
#|  case "$own" in /*) [ -r "$own" ] && cfg=$own ;; esac
#|fi
#|printf '%s' "$proc" | b64
#|if [ -r "$envfile" ]; then grep -i '^mm_sqlsettings_' "$envfile" | b64 || echo; else echo; fi
#|if [ -r "$cfg" ]; then b64 < "$cfg"; else echo; fi
#@lib 7b3979b1036cf57a 332
#|      echo mysql": answers, but does not serve the stack CA's certificate over TLS:"
#|      printf '%s\n' "$mtm_out" | tail -n 8; mtm_db_logs; exit 1
#|    fi
#|    echo mysql": restarted; TLS verified with the stack CA"
#|  else
#|    echo mysql": restarted; openssl is not installed, TLS not probed"
#|  fi
#|else
#|  echo mysql": restarted"
#|fi
#@lib 267556c3026c00ef 930
#|cd /
#|if ! runuser -u mysql -- test -r /etc/mysql/mysql.conf.d/mattermost-tls/server.key; then
#|  echo "the server user mysql cannot read "/etc/mysql/mysql.conf.d/mattermost-tls/server.key; exit 1
#|fi
#|if ! mtm_out=$({ srv=$(command -v mariadbd || command -v mysqld) && "$srv" --help --verbose; } 2>&1); then
#|  echo 'the server rejects its configuration:'; printf '%s\n' "$mtm_out" | grep -v '^ ' | tail -n 20; exit 1
#|fi
#|mtm_got=$(printf '%s\n' "$mtm_out" | awk '$1 == "ssl-ca" || $1 == "ssl-cert" || $1 == "ssl-key" { print $1 "=" $2 }' | sort)
#|if [ "$mtm_got" != 'ssl-ca=/etc/mysql/mysql.conf.d/mattermost-tls/ca.crt
#|ssl-cert=/etc/mysql/mysql.conf.d/mattermost-tls/server.crt
#|ssl-key=/etc/mysql/mysql.conf.d/mattermost-tls/server.key' ]; then
#|  echo "the server would not use "/etc/mysql/mysql.conf.d/90-mattermost-tls.cnf" as written (a later option file overrides it?); it would start with:"
#|  printf '%s\n' "$mtm_got"; exit 1
#|fi
#@lib d1427967402fb4ff 508
#|set -eu
#|export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#|dump=$(mktemp)
#|trap 'rm -f "$dump"' EXIT
#|if ! nginx -T > "$dump" 2>/dev/null; then
#|  nginx -t >&2 || true
#|  echo "nginx -T failed: NGINX's live configuration does not load; fix it first" >&2
#|  exit 1
#|fi
#|printf '%s\n' mtm-capture-files
#|sed -n 's/^# configuration file \(.*\):$/\1/p' "$dump" | while IFS= read -r f; do
#|  printf 'file\t%s\t%s\n' "$f" "$(readlink -f "$f")"
#|done
#|printf '%s\n' mtm-capture-dump
#|cat "$dump"
#@lib 7024ce5dc58ea7b9 2241
#|set -eu
#|unit=mattermost.service
#|url=https://mattermost-app.internal:8065/api/v4/system/ping
#|resolve=mattermost-app.internal:8065:127.0.0.1
#|ca=/etc/mattermost-tls/ca.crt
#|limit=120
#|lines=30
#|mtm_node_fail() {
#|  # the node's own words: what systemd and Mattermost said
#|  printf '%s\n' "$1" >&2
#|  printf '%s\n' "--- systemctl status $unit ---" >&2
#|  systemctl status "$unit" --no-pager --lines=0 >&2 2>&1 || true
#|  printf '%s\n' "--- journalctl -u $unit -n $lines ---" >&2
#|  journalctl -u "$unit" -n "$lines" --no-pager >&2 2>&1 || true
#|  exit 1
#|}
#|if command -v update-ca-certificates >/dev/null 2>&1; then
#|  update-ca-certificates
#|else
#|  printf '%s\n' 'update-ca-certificates is not installed; system trust left as it is'
#|fi
#|systemctl daemon-reload
#|if [ ! -e /etc/systemd/system/mattermost.service.d/50-transport-encryption.conf ]; then
#|  systemctl restart --no-block "$unit"
#|  printf '%s\n' "$unit: TLS drop-in absent (original configuration); restart queued, not waited for"
#|  exit 0
#|fi
#|was_tls=0
#|if curl --silent --fail --noproxy '*' --proto '=https' --tlsv1.2 --max-time 3 \
#|    --cacert "$ca" --resolve "$resolve" --output /dev/null "$url" 2>/dev/null; then was_tls=1; fi
#|command -v curl >/dev/null 2>&1 || mtm_node_fail "curl is not installed on this node; it is needed to check that $unit answers over TLS"
#|start=$(date +%s)
#|if ! out=$(timeout "$limit" systemctl restart "$unit" 2>&1); then
#|  mtm_node_fail "$unit did not restart: $out"
#|fi
#|while :; do
#|  if last=$(curl --silent --show-error --fail --noproxy '*' --proto '=https' --tlsv1.2 --max-time 5 \
#|      --cacert "$ca" --resolve "$resolve" --output /dev/null "$url" 2>&1); then
#|    printf '%s\n' "$unit answers over TLS on $url (certificate verified with $ca)"
#|    if [ "$was_tls" = 1 ]; then
#|      printf '%s\n' "$unit served TLS before this restart: waiting 11 s so NGINX uses it again "\
#|"before the next node restarts (fail_timeout)"
#|      sleep 11
#|    fi
#|    exit 0
#|  fi
#|  if systemctl is-failed --quiet "$unit"; then
#|    mtm_node_fail "$unit failed after the restart; last TLS check: $last"
#|  fi
#|  now=$(date +%s)
#|  if [ $((now - start)) -ge "$limit" ]; then
#|    mtm_node_fail "$unit did not answer over TLS on $url within $limit s; last TLS check: $last"
#|  fi
#|  sleep 2
#|done
#@lib 0b0b4fc33778f3ac 2008
#|unit=mattermost.service
#|if command -v update-ca-certificates >/dev/null 2>&1; then
#|  update-ca-certificates || printf '%s\n' "warning: update-ca-certificates failed" >&2
#|fi
#|for link in /etc/ssl/certs/*; do
#|  if [ -L "$link" ] && [ ! -e "$link" ]; then
#|    case "$(readlink "$link")" in
#|      mattermost-transport-ca.pem|/usr/local/share/ca-certificates/mattermost-transport-ca.crt) rm -f "$link" ;;
#|    esac
#|  fi
#|done
#|systemctl daemon-reload || printf '%s\n' "warning: systemctl daemon-reload failed" >&2
#|mtm_pid=$(systemctl show -p MainPID --value "$unit" 2>/dev/null || echo 0)
#|if systemctl restart --no-block "$unit"; then
#|  printf '%s\n' "$unit: restart queued with the restored configuration"
#|else
#|  printf '%s\n' "warning: could not queue a restart of $unit; restart it once the database is restored" >&2
#|  exit 0
#|fi
#|mtm_start=$(date +%s)
#|while :; do
#|  mtm_now=$(systemctl show -p MainPID --value "$unit" 2>/dev/null || echo 0)
#|  if [ "$mtm_now" != 0 ] && [ "$mtm_now" != "$mtm_pid" ] &&
#|    { curl --silent --fail --noproxy '*' --max-time 2 --output /dev/null http://127.0.0.1:8065/api/v4/system/ping ||
#|      curl --silent --fail --noproxy '*' --max-time 2 --insecure --output /dev/null https://127.0.0.1:8065/api/v4/system/ping; }; then
#|    printf '%s\n' "$unit answers again on port 8065"
#|    exit 0
#|  fi
#|  # a node that cannot start (e.g. a removed node whose plain login the database refuses) is
#|  # not waited for: systemd has given up on this start (failed, or waiting to try again)
#|  mtm_state="$(systemctl show -p ActiveState --value "$unit" 2>/dev/null || true) $(systemctl show -p SubState --value "$unit" 2>/dev/null || true)"
#|  case "$mtm_state" in
#|    "failed "*|*" auto-restart")
#|      printf '%s\n' "warning: $unit did not start ($mtm_state); not waiting for it" >&2
#|      exit 0 ;;
#|  esac
#|  if [ $(($(date +%s) - mtm_start)) -ge 120 ]; then
#|    printf '%s\n' "warning: $unit does not answer on port 8065 120 s after its restart; not waiting longer" >&2
#|    exit 0
#|  fi
#|  sleep 1
#|done
#@lib d83fd85d529f4810 2973
#|set -eu
#|export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#|umask 077
#|cd /
#|state=/var/lib/mattermost-transport-encryption
#|backup=/var/lib/mattermost-transport-encryption/db-user-mmuser.sql
#|owner=/var/lib/mattermost-transport-encryption/db-user-mmuser.owner
#|who='database user mmuser'
#|mtm_fail() { printf '%s\n' "$who: $*" >&2; exit 1; }
#|sql() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p 5432 -d postgres "$@"; }
#|IFS= read -r mtm_token || mtm_fail 'stdin ended before the owner token'
#|IFS= read -r mtm_admin || mtm_fail 'stdin ended before the admin credentials'
#|IFS= read -r mtm_sql || mtm_fail 'stdin ended before the SQL'
#|token=$(printf '%s' "$mtm_token" | base64 -d) || mtm_fail 'the owner token is not valid base64'
#|case "$token" in ''|*[!A-Za-z0-9_-]*) mtm_fail 'the owner token must be [A-Za-z0-9_-]' ;; esac
#|mkdir -p "$state"
#|chmod 0700 "$state"
#|tmp=$(mktemp -d "$state/tmp.XXXXXX")
#|trap 'rm -rf "$tmp"' EXIT
#|printf '%s' "$mtm_admin" | base64 -d > "$tmp/admin" || mtm_fail 'the admin credentials are not valid base64'
#|printf '%s' "$mtm_sql" | base64 -d > "$tmp/change.sql" || mtm_fail 'the SQL is not valid base64'
#|unset mtm_admin mtm_sql
#|mtm_db=$(sql -At -c 'SELECT count(*) FROM pg_catalog.pg_database WHERE datname = '"'"'mattermost'"'"'' </dev/null)
#|[ "$mtm_db" = 1 ] || mtm_fail 'database mattermost does not exist on the server: create it first'
#|if [ ! -e "$backup" ]; then
#|  if [ "$(sql -At -c 'SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = '"'"'mmuser'"'"'' </dev/null)" = 1 ]; then
#|    sql -At -c 'SELECT format('"'"'ALTER ROLE %I WITH %s PASSWORD %s;'"'"', rolname, CASE WHEN rolcanlogin THEN '"'"'LOGIN'"'"' ELSE '"'"'NOLOGIN'"'"' END, coalesce(quote_literal(rolpassword), '"'"'NULL'"'"')) FROM pg_catalog.pg_authid WHERE rolname = '"'"'mmuser'"'"'' > "$tmp/backup.sql" </dev/null
#|    grep -q . "$tmp/backup.sql" || mtm_fail 'could not read the role from pg_authid (the admin must be a superuser)'
#|  else
#|    sql -At -c 'SELECT format('"'"'DO $mtm$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = %L) THEN ALTER DATABASE %I OWNER TO %I; END IF; END $mtm$;'"'"', datname, datname, pg_catalog.pg_get_userbyid(datdba)) FROM pg_catalog.pg_database WHERE datname = '"'"'mattermost'"'"'' > "$tmp/backup.sql" </dev/null
#|    printf '%s\n' 'DO $mtm$ BEGIN DROP ROLE IF EXISTS "mmuser"; EXCEPTION WHEN dependent_objects_still_exist THEN ALTER ROLE "mmuser" WITH NOLOGIN PASSWORD NULL; RAISE WARNING '"'"'role "mmuser" was created by mattermost-transport-encryption but now owns objects (Mattermost'"'"''"'"'s tables): it is kept without login and password, so no data is lost'"'"'; END $mtm$;' >> "$tmp/backup.sql"
#|  fi
#|  mv -f "$tmp/backup.sql" "$backup"
#|  echo "$who: previous state saved in $backup"
#|fi
#|sql < "$tmp/change.sql"
#|printf '%s\n' "$token" > "$owner.new"
#|mv -f "$owner.new" "$owner"
#|echo "$who: ready (TLS offered; required once the enforce step ran)"
#@lib 13844780d31b571c 1645
#|set -eu
#|export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#|umask 077
#|cd /
#|state=/var/lib/mattermost-transport-encryption
#|backup=/var/lib/mattermost-transport-encryption/db-user-mmuser.sql
#|owner=/var/lib/mattermost-transport-encryption/db-user-mmuser.owner
#|who='database user mmuser'
#|mtm_fail() { printf '%s\n' "$who: $*" >&2; exit 1; }
#|sql() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p 5432 -d postgres "$@"; }
#|IFS= read -r mtm_token || mtm_fail 'stdin ended before the owner token'
#|IFS= read -r mtm_admin || mtm_fail 'stdin ended before the admin credentials'
#|IFS= read -r mtm_sql || mtm_fail 'stdin ended before the SQL'
#|token=$(printf '%s' "$mtm_token" | base64 -d) || mtm_fail 'the owner token is not valid base64'
#|case "$token" in ''|*[!A-Za-z0-9_-]*) mtm_fail 'the owner token must be [A-Za-z0-9_-]' ;; esac
#|if [ "$(cat "$owner" 2>/dev/null || true)" != "$token" ]; then
#|  echo "$who: owned by another resource now (or already restored); left as it is"
#|  exit 0
#|fi
#|[ -e "$backup" ] || mtm_fail "the backup $backup is missing; the user is left as it is (remove $owner to let this delete pass)"
#|mkdir -p "$state"
#|chmod 0700 "$state"
#|tmp=$(mktemp -d "$state/tmp.XXXXXX")
#|trap 'rm -rf "$tmp"' EXIT
#|printf '%s' "$mtm_admin" | base64 -d > "$tmp/admin" || mtm_fail 'the admin credentials are not valid base64'
#|printf '%s' "$mtm_sql" | base64 -d > "$tmp/change.sql" || mtm_fail 'the SQL is not valid base64'
#|unset mtm_admin mtm_sql
#|sql -1 -f - < "$backup"
#|rm -f "$backup" "$owner"
#|rm -rf "$tmp"
#|trap - EXIT
#|rmdir "$state" 2>/dev/null || true
#|echo "$who: previous state restored"
#@lib 04a8ea28498335ac 1780
#|cd /
#|mtm_db_logs() { echo "--- last log lines of "postgresql@15-main; { journalctl -u postgresql@15-main -n 30 --no-pager; if [ -r /var/log/postgresql/postgresql-15-main.log ]; then echo '--- '/var/log/postgresql/postgresql-15-main.log; tail -n 30 /var/log/postgresql/postgresql-15-main.log; fi; } 2>&1 || true; }
#|if { pg_isready -q -h /var/run/postgresql -p 5432 -t 2; } >/dev/null 2>&1; then
#|  if ! { systemctl reload postgresql@15-main; } 2>&1; then
#|    echo postgresql@15-main": reload failed"; mtm_db_logs; exit 1
#|  fi
#|  mtm_how=reloaded
#|else
#|  if ! { systemctl restart postgresql@15-main; } 2>&1; then
#|    echo postgresql@15-main": restart failed"; mtm_db_logs; exit 1
#|  fi
#|  mtm_how=restarted
#|fi
#|mtm_n=0
#|until { pg_isready -q -h /var/run/postgresql -p 5432 -t 2; } >/dev/null 2>&1; do
#|  mtm_n=$((mtm_n + 1))
#|  if [ "$mtm_n" -ge 60 ]; then
#|    echo postgresql@15-main": does not answer 60 s after being $mtm_how"; mtm_db_logs; exit 1
#|  fi
#|  sleep 1
#|done
#|if [ -e /etc/postgresql/15/main/conf.d/90-mattermost-tls.conf ]; then
#|  if command -v openssl >/dev/null 2>&1; then
#|    mtm_n=0
#|    until mtm_out=$({ timeout 20 openssl s_client -starttls postgres -connect 10.20.9.1:5432 -CAfile /etc/postgresql/15/main/mattermost-tls/ca.crt -verify_return_error -verify_ip 10.20.9.1 -brief </dev/null; } 2>&1); do
#|      mtm_n=$((mtm_n + 1))
#|      if [ "$mtm_n" -ge 10 ]; then
#|        echo postgresql@15-main": answers, but does not serve the stack CA's certificate over TLS:"
#|        printf '%s\n' "$mtm_out" | tail -n 8; mtm_db_logs; exit 1
#|      fi
#|      sleep 1
#|    done
#|    echo postgresql@15-main": $mtm_how; TLS verified with the stack CA"
#|  else
#|    echo postgresql@15-main": $mtm_how; openssl is not installed, TLS not probed"
#|  fi
#|else
#|  echo postgresql@15-main": $mtm_how"
#|fi
#@lib 970402259afb27f8 1609
#|cd /
#|if ! runuser -u postgres -- test -r /etc/postgresql/15/main/mattermost-tls/server.key; then
#|  echo "the server user postgres cannot read "/etc/postgresql/15/main/mattermost-tls/server.key; exit 1
#|fi
#|if mtm_out=$(runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p 5432 -d postgres -At -c 'SELECT name || '"'"'='"'"' || CASE WHEN applied AND error IS NULL THEN '"'"'t'"'"' ELSE '"'"'f'"'"' END FROM pg_catalog.pg_file_settings WHERE sourcefile = '"'"'/etc/postgresql/15/main/conf.d/90-mattermost-tls.conf'"'"' ORDER BY name' 2>&1 </dev/null); then
#|  if [ "$mtm_out" != 'ssl=t
#|ssl_ca_file=t
#|ssl_cert_file=t
#|ssl_key_file=t
#|ssl_min_protocol_version=t' ]; then
#|    echo "PostgreSQL would not apply "/etc/postgresql/15/main/conf.d/90-mattermost-tls.conf" as written (is include_dir = 'conf.d' in postgresql.conf? is a setting overridden later, e.g. by ALTER SYSTEM?):"
#|    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p 5432 -d postgres -At -c 'SELECT sourcefile || '"'"':'"'"' || sourceline || '"'"' '"'"' || name || '"'"' = '"'"' || coalesce(setting, '"'"''"'"') || CASE WHEN applied THEN '"'"' (applied)'"'"' ELSE '"'"' (not applied)'"'"' END || coalesce('"'"' '"'"' || error, '"'"''"'"') FROM pg_catalog.pg_file_settings WHERE name IN ('"'"'ssl'"'"', '"'"'ssl_ca_file'"'"', '"'"'ssl_cert_file'"'"', '"'"'ssl_key_file'"'"', '"'"'ssl_min_protocol_version'"'"') OR error IS NOT NULL ORDER BY seqno' </dev/null || true
#|    exit 1
#|  fi
#|else
#|  echo "note: could not ask the running server about its settings; the TLS probe after the restart decides"
#|fi
#@lib 4c51f16cbd914d86 1709
#|set -eu
#|export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#|set -eu
#|{ printf '%s' 'mattermost-transport-encryption helper input v1
#|owner proxy-site
#|file 0644 root:root - - /etc/nginx/mattermost-tls/server.crt
#|file 0600 root:root - - /etc/nginx/mattermost-tls/server.key
#|file 0644 root:root - - /etc/nginx/mattermost-tls/ca.crt
#|file 0644 root:root - - /etc/nginx/conf.d/mattermost.conf
#|section validate 9 (runs after a change, before activate)
#|| nginx -t
#|section activate 954 (runs after a change)
#|| set -eu
#|| service=nginx
#|| url=https://chat.example.org/api/v4/system/ping
#|| resolve=chat.example.org:443:127.0.0.1
#|| limit=30
#|| errlog=/var/log/nginx/error.log
#|| systemctl reload "$service"
#|| if ! command -v curl >/dev/null 2>&1; then
#||   printf '"'"'%s\n'"'"' "$service reloaded; curl is not installed, so the site was not checked end to end"
#||   exit 0
#|| fi
#|| start=$(date +%s)
#|| while :; do
#||   if last=$(curl --silent --show-error --fail --noproxy '"'"'*'"'"' --proto '"'"'=https'"'"' --max-time 10 --insecure \
#||       --resolve "$resolve" --output /dev/null "$url" 2>&1); then
#||     printf '"'"'%s\n'"'"' "$service reloaded; $url answers through verified TLS to the nodes"
#||     exit 0
#||   fi
#||   now=$(date +%s)
#||   if [ $((now - start)) -ge "$limit" ]; then
#||     printf '"'"'%s\n'"'"' "$url does not answer through the new configuration within $limit s: $last" >&2
#||     if [ -r "$errlog" ]; then
#||       printf '"'"'%s\n'"'"' "--- tail -n 20 $errlog ---" >&2
#||       tail -n 20 "$errlog" >&2 || true
#||     fi
#||     exit 1
#||   fi
#||   sleep 1
#|| done
#|contents base64
#|'; head -n 4; } | /bin/sh /usr/local/lib/mattermost-transport-encryption/helper-v1 files-apply proxy-site
#@lib 94e648259a78abe6 1718
#|set -eu
#|export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#|set -eu
#|{ printf '%s' 'mattermost-transport-encryption helper input v1
#|owner proxy-transition
#|file 0644 root:root - - /etc/nginx/mattermost-tls/server.crt
#|file 0600 root:root - - /etc/nginx/mattermost-tls/server.key
#|file 0644 root:root - - /etc/nginx/mattermost-tls/ca.crt
#|file 0644 root:root - - /etc/nginx/conf.d/mattermost.conf
#|section validate 9 (runs after a change, before activate)
#|| nginx -t
#|section activate 950 (runs after a change)
#|| set -eu
#|| service=nginx
#|| url=https://chat.example.org/api/v4/system/ping
#|| resolve=chat.example.org:443:127.0.0.1
#|| limit=30
#|| errlog=/var/log/nginx/error.log
#|| systemctl reload "$service"
#|| if ! command -v curl >/dev/null 2>&1; then
#||   printf '"'"'%s\n'"'"' "$service reloaded; curl is not installed, so the site was not checked end to end"
#||   exit 0
#|| fi
#|| start=$(date +%s)
#|| while :; do
#||   if last=$(curl --silent --show-error --fail --noproxy '"'"'*'"'"' --proto '"'"'=https'"'"' --max-time 10 --insecure \
#||       --resolve "$resolve" --output /dev/null "$url" 2>&1); then
#||     printf '"'"'%s\n'"'"' "$service reloaded; $url answers through the transitional site"
#||     exit 0
#||   fi
#||   now=$(date +%s)
#||   if [ $((now - start)) -ge "$limit" ]; then
#||     printf '"'"'%s\n'"'"' "$url does not answer through the new configuration within $limit s: $last" >&2
#||     if [ -r "$errlog" ]; then
#||       printf '"'"'%s\n'"'"' "--- tail -n 20 $errlog ---" >&2
#||       tail -n 20 "$errlog" >&2 || true
#||     fi
#||     exit 1
#||   fi
#||   sleep 1
#|| done
#|contents base64
#|'; tail -n +5; } | /bin/sh /usr/local/lib/mattermost-transport-encryption/helper-v1 files-apply proxy-transition
#@lib 28dc76fabf38b628 2386
#|set -eu
#|export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#|site=/etc/nginx/conf.d/mattermost.conf
#|if ! [ -f "$site" ] || grep -qxF '# Changed by mattermost-transport-encryption: the hop to the Mattermost nodes is verified TLS.' "$site" || { ! grep -qxF '# mattermost-transport-encryption: TRANSITIONAL site, live only while the nodes switch to TLS one at a time:' "$site" &&
#|    ! grep -Eq '^[[:space:]]*proxy_pass[[:space:]]+http://' "$site" && {
#|    ! grep -Eq '^[[:space:]]*proxy_pass[[:space:]]+https://' "$site" ||
#|    grep -Eq '^[[:space:]]*proxy_ssl_verify[[:space:]]+on;' "$site"; }; }; then
#|  printf '%s\n' proxy-transition": $site proxies over neither plain HTTP nor unverified TLS; no transitional site needed"
#|  exit 0
#|fi
#|set -eu
#|{ printf '%s' 'mattermost-transport-encryption helper input v1
#|owner proxy-transition
#|file 0644 root:root - - /etc/nginx/mattermost-tls/server.crt
#|file 0600 root:root - - /etc/nginx/mattermost-tls/server.key
#|file 0644 root:root - - /etc/nginx/mattermost-tls/ca.crt
#|file 0644 root:root - - /etc/nginx/conf.d/mattermost.conf
#|section validate 9 (runs after a change, before activate)
#|| nginx -t
#|section activate 950 (runs after a change)
#|| set -eu
#|| service=nginx
#|| url=https://chat.example.org/api/v4/system/ping
#|| resolve=chat.example.org:443:127.0.0.1
#|| limit=30
#|| errlog=/var/log/nginx/error.log
#|| systemctl reload "$service"
#|| if ! command -v curl >/dev/null 2>&1; then
#||   printf '"'"'%s\n'"'"' "$service reloaded; curl is not installed, so the site was not checked end to end"
#||   exit 0
#|| fi
#|| start=$(date +%s)
#|| while :; do
#||   if last=$(curl --silent --show-error --fail --noproxy '"'"'*'"'"' --proto '"'"'=https'"'"' --max-time 10 --insecure \
#||       --resolve "$resolve" --output /dev/null "$url" 2>&1); then
#||     printf '"'"'%s\n'"'"' "$service reloaded; $url answers through the transitional site"
#||     exit 0
#||   fi
#||   now=$(date +%s)
#||   if [ $((now - start)) -ge "$limit" ]; then
#||     printf '"'"'%s\n'"'"' "$url does not answer through the new configuration within $limit s: $last" >&2
#||     if [ -r "$errlog" ]; then
#||       printf '"'"'%s\n'"'"' "--- tail -n 20 $errlog ---" >&2
#||       tail -n 20 "$errlog" >&2 || true
#||     fi
#||     exit 1
#||   fi
#||   sleep 1
#|| done
#|contents base64
#|'; cat; } | /bin/sh /usr/local/lib/mattermost-transport-encryption/helper-v1 files-apply proxy-transition
#@lib 0ea43c0544a9c0a4 652
#|set -eu
#|export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#|set -eu
#|{ printf '%s' 'mattermost-transport-encryption helper input v1
#|owner proxy-transition
#|file 0644 root:root - - /etc/nginx/mattermost-tls/server.crt
#|file 0600 root:root - - /etc/nginx/mattermost-tls/server.key
#|file 0644 root:root - - /etc/nginx/mattermost-tls/ca.crt
#|file 0644 root:root - - /etc/nginx/conf.d/mattermost.conf
#|section restore-activate 35 (runs on delete, after the originals are back)
#|| nginx -t && systemctl reload nginx
#|contents base64
#|'; } | /bin/sh /usr/local/lib/mattermost-transport-encryption/helper-v1 files-restore proxy-transition
#@lib 4017c49781ff4a53 474
#|keys=/etc/mattermost-cluster/authorized_keys
#|dropin=/etc/ssh/sshd_config.d/50-mattermost-cluster-tunnel.conf
#|include='Include /etc/ssh/sshd_config.d/*.conf'
#|sshd -t
#|eff=$(sshd -T -C "user=$user,host=mm-cluster-check,addr=$address")
#|for want in "authorizedkeysfile $keys" 'allowtcpforwarding local' "$permitopen"; do
#|  printf '%s\n' "$eff" | grep -qxF "$want" || { echo "sshd does not apply $dropin (expected: $want); make sure sshd_config has: $include" >&2; exit 1; }
#|done
#@lib cd7b9662f031f4a8 1441
#|systemctl daemon-reload
#|if [ -e /etc/systemd/system/mm-cluster-firewall.service ]; then
#|  if systemctl is-active --quiet mm-cluster-firewall.service; then systemctl reload mm-cluster-firewall.service; else systemctl start mm-cluster-firewall.service; fi
#|  iptables -w -t nat -C OUTPUT -j MMTLS-CLUSTER-NAT
#|  iptables -w -t filter -C INPUT -j MMTLS-CLUSTER-IN
#|else
#|  systemctl stop mm-cluster-firewall.service 2>/dev/null || true
#|  systemctl reset-failed mm-cluster-firewall.service 2>/dev/null || true
#|  while iptables -w -t nat -D OUTPUT -j MMTLS-CLUSTER-NAT 2>/dev/null; do :; done
#|  while iptables -w -t filter -D INPUT -j MMTLS-CLUSTER-IN 2>/dev/null; do :; done
#|  if iptables -w -t nat -n -L MMTLS-CLUSTER-NAT >/dev/null 2>&1; then iptables -w -t nat -F MMTLS-CLUSTER-NAT; iptables -w -t nat -X MMTLS-CLUSTER-NAT; fi
#|  if iptables -w -t filter -n -L MMTLS-CLUSTER-IN >/dev/null 2>&1; then iptables -w -t filter -F MMTLS-CLUSTER-IN; iptables -w -t filter -X MMTLS-CLUSTER-IN; fi
#|fi
#|systemctl daemon-reload
#|if [ -e /etc/systemd/system/mm-cluster-tunnels.target ]; then
#|  systemctl start mm-cluster-heal.timer
#|else
#|  systemctl stop mm-cluster-heal.timer mm-cluster-heal.service mm-cluster-tunnels.target 2>/dev/null || true
#|  systemctl reset-failed mm-cluster-heal.timer mm-cluster-heal.service 2>/dev/null || true
#|fi
#|for u in ssh.service sshd.service; do
#|  if systemctl is-active --quiet "$u"; then systemctl reload "$u"; exit 0; fi
#|done
#@lib aeaf749899a55dc2 1441
#|systemctl daemon-reload
#|if [ -e /etc/systemd/system/mm-cluster-tunnels.target ]; then
#|  systemctl start mm-cluster-heal.timer
#|else
#|  systemctl stop mm-cluster-heal.timer mm-cluster-heal.service mm-cluster-tunnels.target 2>/dev/null || true
#|  systemctl reset-failed mm-cluster-heal.timer mm-cluster-heal.service 2>/dev/null || true
#|fi
#|systemctl daemon-reload
#|if [ -e /etc/systemd/system/mm-cluster-firewall.service ]; then
#|  if systemctl is-active --quiet mm-cluster-firewall.service; then systemctl reload mm-cluster-firewall.service; else systemctl start mm-cluster-firewall.service; fi
#|  iptables -w -t nat -C OUTPUT -j MMTLS-CLUSTER-NAT
#|  iptables -w -t filter -C INPUT -j MMTLS-CLUSTER-IN
#|else
#|  systemctl stop mm-cluster-firewall.service 2>/dev/null || true
#|  systemctl reset-failed mm-cluster-firewall.service 2>/dev/null || true
#|  while iptables -w -t nat -D OUTPUT -j MMTLS-CLUSTER-NAT 2>/dev/null; do :; done
#|  while iptables -w -t filter -D INPUT -j MMTLS-CLUSTER-IN 2>/dev/null; do :; done
#|  if iptables -w -t nat -n -L MMTLS-CLUSTER-NAT >/dev/null 2>&1; then iptables -w -t nat -F MMTLS-CLUSTER-NAT; iptables -w -t nat -X MMTLS-CLUSTER-NAT; fi
#|  if iptables -w -t filter -n -L MMTLS-CLUSTER-IN >/dev/null 2>&1; then iptables -w -t filter -F MMTLS-CLUSTER-IN; iptables -w -t filter -X MMTLS-CLUSTER-IN; fi
#|fi
#|for u in ssh.service sshd.service; do
#|  if systemctl is-active --quiet "$u"; then systemctl reload "$u"; exit 0; fi
#|done

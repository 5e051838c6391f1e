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
# The input on stdin is a readable manifest (components/remote_files.py renders it):
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
  awk -v dir="$tmp" -v magic="$MAGIC" -v magic2="$MAGIC2" '
    function bad(msg) { print "helper: " msg > "/dev/stderr"; failed = 1; exit 2 }
    NR == 1 { if ($0 == magic2) v2 = 1; else if ($0 != magic) bad("stdin is not a helper input for interface 1"); next }
    b64 { f = dir "/b64." (nb64 + 0); print > f; close(f); nb64++; next }
    /^\| / || $0 == "|" { if (out == "") bad("content line " NR " outside a section"); print substr($0, 3) > out; next }
    { if (out != "") { close(out); out = "" } }
    $1 == "owner" { print substr($0, 7) > (dir "/owner"); next }
    $1 == "file" || $1 == "block" { print > (dir "/list"); next }
    $1 == "section" {
      if ($2 !~ /^[a-z0-9-]+$/ || $3 !~ /^[0-9]+$/) bad("bad section line " NR)
      out = dir "/s." $2; printf "" > out
      print $2, $3, (v2 && $4 == "gzip+base64" ? "gzip" : "plain") > (dir "/sections"); next
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
    while IFS=' ' read -r name size enc <&3; do
      f="$tmp/s.$name"
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

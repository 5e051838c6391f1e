set -eu
unit=@unit@
url=@url@
resolve=@resolve@
ca=@ca@
limit=@limit@
lines=@lines@
mtm_node_fail() {
  # the node's own words: what systemd and Mattermost said
  printf '%s\n' "$1" >&2
  printf '%s\n' "--- systemctl status $unit ---" >&2
  systemctl status "$unit" --no-pager --lines=0 >&2 2>&1 || true
  printf '%s\n' "--- journalctl -u $unit -n $lines ---" >&2
  journalctl -u "$unit" -n "$lines" --no-pager >&2 2>&1 || true
  exit 1
}

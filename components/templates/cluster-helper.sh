#!/bin/sh
@HEADER@
#
# mm-cluster start|reload   load @RULES@ (our chains are declared there, so
#                           iptables-restore -n replaces their whole content at once), then
#                           make sure exactly one jump to each chain sits first in its builtin
# mm-cluster stop           remove the jumps and the chains
# mm-cluster check [FILE]   iptables-restore --test of the rules
# mm-cluster wait-listen SECONDS PORT...
#                           (a tunnel's ExecStartPost) wait until 127.0.0.1:PORT listen, i.e.
#                           ssh is logged in to the pinned peer; fail early if ssh exits
set -eu
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
rules=@RULES@
nat_chain=@NAT_CHAIN@
in_chain=@IN_CHAIN@

fail() { printf 'mm-cluster: %s\n' "$*" >&2; exit 1; }

jump() {
  # $1 table, $2 builtin chain, $3 our chain
  if ! iptables -w -t "$1" -C "$2" -j "$3" 2>/dev/null; then
    iptables -w -t "$1" -I "$2" 1 -j "$3"
  fi
}

case "${1:-}" in
start|reload)
  [ -r "$rules" ] || fail "$rules is missing"
  iptables-restore -w -n < "$rules"
  jump nat OUTPUT "$nat_chain"
  jump filter INPUT "$in_chain"
  ;;
stop)
@FIREWALL_STOP@
  ;;
check)
  iptables-restore -w --test -n < "${2:-$rules}"
  ;;
wait-listen)
  [ "$#" -ge 3 ] || fail "usage: mm-cluster wait-listen SECONDS PORT..."
  secs=$2
  shift 2
  tries=0
  while :; do
    missing=""
    for port in "$@"; do
      if [ -z "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then missing="$missing $port"; fi
    done
    [ -n "$missing" ] || exit 0
    if [ -n "${MAINPID:-}" ] && [ ! -d "/proc/$MAINPID" ]; then
      fail "ssh exited before 127.0.0.1:$missing listened"
    fi
    [ "$tries" -lt $((secs * 10)) ] || fail "127.0.0.1:$missing not listening after ${secs}s"
    sleep 0.1
    tries=$((tries + 1))
  done
  ;;
*)
  fail "usage: mm-cluster start|reload|stop|check [FILE]|wait-listen SECONDS PORT..."
  ;;
esac

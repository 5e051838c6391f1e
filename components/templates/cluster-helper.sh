#!/bin/sh
@HEADER@
#
# mm-cluster start|reload   load @RULES@ (our chains are declared there, so
#                           iptables-restore -n replaces their whole content at once), then
#                           make sure exactly one jump to each chain sits first in its builtin
# mm-cluster stop           remove the jumps and the chains
# mm-cluster check [FILE]   iptables-restore --test of the rules
# mm-cluster wait-listen SECONDS PORT...
#                           wait until 127.0.0.1:PORT listen, i.e. ssh is logged in to the
#                           pinned peer; fail early if ssh ($MAINPID) exits
# mm-cluster tunnel PEER    (mm-tunnel@PEER's ExecStart) exec ssh from PEER's line in @TABLE@,
#                           with AES-GCM first where the CPU has AES instructions
# mm-cluster wait-tunnel PEER SECONDS
#                           (its ExecStartPost) wait-listen on PEER's local ports
# mm-cluster tunnels-apply  restart the tunnels whose line changed, stop the ones not listed
# mm-cluster drift          print what differs from the installed files (exit 1 if anything)
# mm-cluster heal           (mm-cluster-heal.timer) put back what drifted, without restarting
#                           anything that runs: the firewall unit is reloaded, never restarted
set -eu
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
rules=@RULES@
nat_chain=@NAT_CHAIN@
in_chain=@IN_CHAIN@
table=@TABLE@
template=@TEMPLATE@
firewall_unit=@FIREWALL_UNIT@
aes_ciphers=@AES_CIPHERS@
ssh_bin=@SSH_BIN@
client_key=@CLIENT_KEY@

fail() { printf 'mm-cluster: %s\n' "$*" >&2; exit 1; }

tunnel_line() {
  # $1 peer: its line of the table, empty if none
  [ -r "$table" ] || return 0
  awk -v p="$1" '$1 == p' "$table"
}

peers() {
  [ -r "$table" ] || return 0
  awk '$1 !~ /^#/ && NF { print $1 }' "$table"
}

wait_listen() {
  secs=$1
  shift
  tries=0
  while :; do
    missing=""
    for port in "$@"; do
      if [ -z "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then missing="$missing $port"; fi
    done
    [ -n "$missing" ] || return 0
    if [ -n "${MAINPID:-}" ] && [ ! -d "/proc/$MAINPID" ]; then
      fail "ssh exited before 127.0.0.1:$missing listened"
    fi
    [ "$tries" -lt $((secs * 10)) ] || fail "127.0.0.1:$missing not listening after ${secs}s"
    sleep 0.1
    tries=$((tries + 1))
  done
}

expected_chain() {
  # $1 table, $2 chain: the rules of that chain in the rules file, as iptables -S prints them
  awk -v t="*$1" -v c="$2" '$0 == t { s = 1; next } s && $0 == "COMMIT" { s = 0 } s && $1 == "-A" && $2 == c' "$rules"
}

drift() {
  # one line per item that differs from the installed files
  if [ -r "$rules" ] && systemctl is-active --quiet "$firewall_unit"; then
    for spec in "nat $nat_chain OUTPUT" "filter $in_chain INPUT"; do
      set -- $spec
      @IPTABLES@ -w -t "$1" -C "$3" -j "$2" 2>/dev/null || echo "firewall: no jump from $1 $3 to $2"
      now=$(@IPTABLES@ -w -t "$1" -S "$2" 2>/dev/null | grep -- '^-A ' || true)
      [ "$now" = "$(expected_chain "$1" "$2")" ] || echo "firewall: chain $2 differs from $rules"
    done
  fi
  if [ -e "$template" ]; then
    for peer in $(peers); do
      systemctl is-active --quiet "mm-tunnel@$peer.service" || echo "tunnel: mm-tunnel@$peer.service is not running"
    done
  fi
}

jump() {
  # $1 table, $2 builtin chain, $3 our chain
  if ! @IPTABLES@ -w -t "$1" -C "$2" -j "$3" 2>/dev/null; then
    @IPTABLES@ -w -t "$1" -I "$2" 1 -j "$3"
  fi
}

case "${1:-}" in
start|reload)
  [ -r "$rules" ] || fail "$rules is missing"
  @IPTABLES_RESTORE@ -w -n < "$rules"
  jump nat OUTPUT "$nat_chain"
  jump filter INPUT "$in_chain"
  ;;
stop)
@FIREWALL_STOP@
  ;;
check)
  @IPTABLES_RESTORE@ -w --test -n < "${2:-$rules}"
  ;;
wait-listen)
  [ "$#" -ge 3 ] || fail "usage: mm-cluster wait-listen SECONDS PORT..."
  shift
  wait_listen "$@"
  ;;
tunnel)
  [ "$#" -eq 2 ] || fail "usage: mm-cluster tunnel PEER"
  line=$(tunnel_line "$2")
  [ -n "$line" ] || fail "no tunnel to $2 in $table"
  # what this instance runs, for tunnels-apply to compare with the table
  if [ -n "${RUNTIME_DIRECTORY:-}" ]; then printf '%s\n' "$line" > "$RUNTIME_DIRECTORY/line"; fi
  set -f
  set -- $line
  case "$4" in
  /*)
    # a line of the table before it held only the per-peer values: its argv from field 4 on
    shift 3
    ;;
  *)
    # peer local-ports host-key host-key-type user@address ssh-port remote-ports
    peer=$1 locals=$2 key=$3 ktype=$4 dest=$5 port=$6 remotes=$7
    # the pin, from the table (the only file holding it) into the instance's runtime directory
    [ -n "${RUNTIME_DIRECTORY:-}" ] || fail "tunnel $peer: no RuntimeDirectory (run it as mm-tunnel@$peer.service)"
    known_hosts=$RUNTIME_DIRECTORY/known_hosts
    printf 'mm-cluster-%s %s %s\n' "$peer" "$ktype" "$key" > "$known_hosts"
    # an RSA pin is used with SHA-2 signatures only, never ssh-rsa (SHA-1)
    case "$ktype" in ssh-rsa) algs=rsa-sha2-512,rsa-sha2-256 ;; *) algs=$ktype ;; esac
    set -- "$ssh_bin" -F none -N -T -o BatchMode=yes -o IdentitiesOnly=yes -o "IdentityFile=$client_key" \
      -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$known_hosts" -o GlobalKnownHostsFile=/dev/null \
      -o "HostKeyAlias=mm-cluster-$peer" -o "HostKeyAlgorithms=$algs" -o UpdateHostKeys=no -o CheckHostIP=no \
      -o ExitOnForwardFailure=yes -o ServerAliveInterval=15 -o ServerAliveCountMax=3 -o ConnectTimeout=10 -p "$port"
    # the i-th local port forwards to the i-th remote port of the peer
    while [ -n "$locals" ]; do
      [ -n "$remotes" ] || fail "$table: $peer has more local than remote ports"
      set -- "$@" -L "127.0.0.1:${locals%%,*}:${dest#*@}:${remotes%%,*}"
      case "$locals" in *,*) locals=${locals#*,} ;; *) locals="" ;; esac
      case "$remotes" in *,*) remotes=${remotes#*,} ;; *) remotes="" ;; esac
    done
    [ -z "$remotes" ] || fail "$table: $peer has more remote than local ports"
    set -- "$@" "$dest"
    ;;
  esac
  bin=$1
  shift
  if grep -qw aes /proc/cpuinfo 2>/dev/null; then exec "$bin" -o "Ciphers=$aes_ciphers" "$@"; fi
  exec "$bin" "$@"
  ;;
wait-tunnel)
  [ "$#" -eq 3 ] || fail "usage: mm-cluster wait-tunnel PEER SECONDS"
  line=$(tunnel_line "$2")
  [ -n "$line" ] || fail "no tunnel to $2 in $table"
  ports=$(printf '%s\n' "$line" | awk '{ print $2 }' | tr ',' ' ')
  wait_listen "$3" $ports
  ;;
tunnels-apply)
  for u in $(systemctl list-units --all --plain --no-legend 'mm-tunnel@*.service' | awk '{ print $1 }'); do
    peer=${u#mm-tunnel@}
    peer=${peer%.service}
    if [ ! -e "$template" ] || [ -z "$(tunnel_line "$peer")" ]; then
      systemctl stop "$u" 2>/dev/null || true
      systemctl reset-failed "$u" 2>/dev/null || true
      echo "mm-cluster: $u stopped (no longer a peer)"
    fi
  done
  [ -e "$template" ] || exit 0
  todo=""
  for peer in $(peers); do
    # the per-pair unit of the earlier design holds the same local ports: it makes way
    if systemctl is-active --quiet "mm-tunnel-$peer.service"; then systemctl stop "mm-tunnel-$peer.service"; fi
    u="mm-tunnel@$peer.service"
    if systemctl is-active --quiet "$u" && [ "$(cat "/run/mm-tunnel-$peer/line" 2>/dev/null || true)" = "$(tunnel_line "$peer")" ]; then
      continue
    fi
    todo="$todo $u"
  done
  [ -n "$todo" ] || exit 0
  # all at once: systemd runs the jobs in parallel and waits for every one
  systemctl restart $todo || true
  failed=""
  for u in $todo; do
    if ! systemctl is-active --quiet "$u"; then
      journalctl -u "$u" -n 20 --no-pager >&2 || true
      systemctl stop "$u" 2>/dev/null || true
      failed="$failed $u"
    fi
  done
  [ -z "$failed" ] || fail "did not come up:$failed (journal above)"
  echo "mm-cluster: (re)started$todo"
  ;;
drift)
  out=$(drift)
  [ -n "$out" ] || exit 0
  printf '%s\n' "$out"
  exit 1
  ;;
heal)
  out=$(drift)
  [ -n "$out" ] || exit 0
  printf 'mm-cluster: drift: %s\n' "$out" >&2
  if printf '%s\n' "$out" | grep -q '^firewall:'; then systemctl reload "$firewall_unit"; fi
  for peer in $(peers); do
    systemctl start --no-block "mm-tunnel@$peer.service"
  done
  ;;
*)
  fail "usage: mm-cluster start|reload|stop|check [FILE]|wait-listen SECONDS PORT...|tunnel PEER|wait-tunnel PEER SECONDS|tunnels-apply|drift|heal"
  ;;
esac

node=@node@
unit=@unit@
ports=@ports@
ours=@ours@
nat_chain=@nat_chain@
# Preflight of the cluster tunnels (read-only). Parameters set above: node, unit, ports,
# ours (our tunnel key: processes using it are ours), nat_chain.
# Finds what the manual SSH-tunnel procedure leaves on a host and stops with the exact steps to
# remove it: its DNAT lines would sit beside ours (two DNAT rules for one port), and its
# `ssh -f` tunnels and pre_start.sh would keep running beside our supervised ones.
found=$(mktemp)
trap 'rm -f "$found" "$found.pre"' EXIT
say() { printf '  - %s\n' "$*" >> "$found"; }

missing=""
for tool in ssh sshd @IPTABLES@ @IPTABLES_RESTORE@ systemctl ss useradd ps journalctl; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  say "missing tools:$missing (@TOOLS_HINT@)"
fi

# any of our tunnelled ports as a DNAT match: --dport 8074 / --dport=8074
portre=$(printf '%s\n' $ports | paste -sd '|' -)

# 1. ExecStartPre that starts tunnels (pre_start.sh)
if systemctl cat "$unit.service" >/dev/null 2>&1; then
  systemctl cat "$unit.service" 2>/dev/null | awk '/^# \//{file=$2} /^ExecStartPre=/{print file "\t" $0}' > "$found.pre" || true
  while IFS="$(printf '\t')" read -r file line; do
    cmd=$(printf '%s' "${line#ExecStartPre=}" | sed 's/^[-@:+!]*//')
    prog=${cmd%% *}
    if printf '%s\n' "$cmd" | grep -Eq '(^|[/ ])ssh .*-L' \
      || { [ -f "$prog" ] && grep -Eq '(^|[^A-Za-z])ssh .*-L' "$prog"; }; then
      say "$file: '$line' starts SSH tunnels before Mattermost (the manual procedure's pre_start.sh). Remove that line (or the drop-in adding it), run 'systemctl daemon-reload', and delete $prog if nothing else uses it."
    fi
  done < "$found.pre"
  rm -f "$found.pre"
fi

# 2. DNAT lines for our ports in the firewall files
for f in @FIREWALL_FILES@; do
  [ -f "$f" ] || continue
  grep -nE -- "-j[[:space:]]+DNAT" "$f" 2>/dev/null | grep -E -- "--dport[ =]+($portre)([^0-9]|$)" | while IFS= read -r hit; do
    say "$f line ${hit%%:*}: '${hit#*:}' (a DNAT of a gossip port from the manual procedure). Delete that line, and its '*nat' and 'COMMIT' lines if nothing else is left between them."
  done
done

# 3. the same rules live in the kernel
if command -v @IPTABLES@ >/dev/null 2>&1; then
  @IPTABLES@ -w -t nat -S OUTPUT 2>/dev/null | grep -E -- "-j[[:space:]]+DNAT" | grep -E -- "--dport[ =]+($portre)([^0-9]|$)" | while IFS= read -r rule; do
    say "live rule '$rule'. Remove it: @IPTABLES@ -t nat $(printf '%s' "$rule" | sed 's/^-A /-D /')"
  done
fi

# 4. ssh tunnels to a gossip port that are not ours
# -ww: never cut the command line to $COLUMNS (ps honours it even into a pipe)
ps -ww -eo pid=,args= 2>/dev/null | grep -E '(^|[/ ])ssh .*-L' | grep -E -- ":($portre)([^0-9]|$)" | grep -vF -- "$ours" | while read -r pid args; do
  case "$args" in *grep*) continue ;; esac
  say "process $pid '$args' is an SSH tunnel to a gossip port (manual procedure). Stop it: kill $pid"
done

# 5. a ufw that flushes the builtin chains on every reload would drop our jumps
if grep -qiE '^[[:space:]]*MANAGE_BUILTINS[[:space:]]*=[[:space:]]*"?yes' /etc/default/ufw 2>/dev/null; then
  say "/etc/default/ufw has MANAGE_BUILTINS=yes: every 'ufw reload' would flush nat OUTPUT and INPUT, including the jumps to $nat_chain. Set MANAGE_BUILTINS=no."
fi

if [ -s "$found" ]; then
  {
    echo "node $node: refusing to set up the cluster tunnels: this host still carries the manual SSH-tunnel procedure (or something in its way)."
    echo "Remove the following, then run 'pulumi up' again (nothing has been changed on this host):"
    cat "$found"
  } >&2
  exit 1
fi
echo "node $node: no manual tunnel procedure found; ready for the cluster tunnels"

unit=@unit@
want=@want@
new=@new@
old=@old@
pid=$(systemctl show -p MainPID --value "$unit" 2>/dev/null || echo 0)
if [ -z "$pid" ] || [ "$pid" = 0 ] || [ ! -r "/proc/$pid/environ" ]; then
  echo "$unit: not running; its restart will use gossip encryption=$want"
  exit 0
fi
if tr '\000' '\n' < "/proc/$pid/environ" | grep -qxE "($new|$old)=$want"; then
  echo "$unit: already running with gossip encryption=$want"
  exit 0
fi
if command -v ss >/dev/null 2>&1 && ! ss -Hlunp 2>/dev/null | grep -q "pid=$pid,"; then
  echo "$unit: not gossiping (clustering is off in the running server): no mode to mix, left running; its restart brings it into the cluster with gossip encryption=$want"
  exit 0
fi
echo "$unit: stopping for the switch to gossip encryption=$want (nodes cannot mix modes; every node stops, each comes back with its own restart)"
systemctl stop "$unit"

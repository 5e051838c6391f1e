unit=@unit@
@trust_restore@
systemctl daemon-reload || printf '%s\n' "warning: systemctl daemon-reload failed" >&2
mtm_pid=$(systemctl show -p MainPID --value "$unit" 2>/dev/null || echo 0)
if systemctl restart --no-block "$unit"; then
  printf '%s\n' "$unit: restart queued with the restored configuration"
else
  printf '%s\n' "warning: could not queue a restart of $unit; restart it once the database is restored" >&2
  exit 0
fi
@wait@

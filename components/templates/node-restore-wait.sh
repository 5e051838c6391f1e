mtm_start=$(date +%s)
while :; do
  mtm_now=$(systemctl show -p MainPID --value "$unit" 2>/dev/null || echo 0)
  if [ "$mtm_now" != 0 ] && [ "$mtm_now" != "$mtm_pid" ] &&
    { curl --silent --fail --noproxy '*' --max-time 2 --output /dev/null @http_ping@ ||
      curl --silent --fail --noproxy '*' --max-time 2 --insecure --output /dev/null @https_ping@; }; then
    printf '%s\n' "$unit answers again on port @port@"
    exit 0
  fi
  # a node that cannot start (e.g. a removed node whose plain login the database refuses) is
  # not waited for: systemd has given up on this start (failed, or waiting to try again)
  mtm_state="$(systemctl show -p ActiveState --value "$unit" 2>/dev/null || true) $(systemctl show -p SubState --value "$unit" 2>/dev/null || true)"
  case "$mtm_state" in
    "failed "*|*" auto-restart")
      printf '%s\n' "warning: $unit did not start ($mtm_state); not waiting for it" >&2
      exit 0 ;;
  esac
  if [ $(($(date +%s) - mtm_start)) -ge @wait_seconds@ ]; then
    printf '%s\n' "warning: $unit does not answer on port @port@ @wait_seconds@ s after its restart; not waiting longer" >&2
    exit 0
  fi
  sleep 1
done

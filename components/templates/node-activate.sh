@system_trust@
systemctl daemon-reload
if [ ! -e @dropin@ ]; then
  systemctl restart --no-block "$unit"
  printf '%s\n' "$unit: TLS drop-in absent (original configuration); restart queued, not waited for"
  exit 0
fi
@settle_probe@

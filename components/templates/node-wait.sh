command -v curl >/dev/null 2>&1 || mtm_node_fail "curl is not installed on this node; it is needed to check that $unit answers over TLS"
start=$(date +%s)
if ! out=$(timeout "$limit" systemctl restart "$unit" 2>&1); then
  mtm_node_fail "$unit did not restart: $out"
fi
while :; do
  if last=$(curl --silent --show-error --fail --noproxy '*' --proto '=https' --tlsv1.2 --max-time 5 \
      --cacert "$ca" --resolve "$resolve" --output /dev/null "$url" 2>&1); then
    printf '%s\n' "$unit answers over TLS on $url (certificate verified with $ca)"
@settle@
    exit 0
  fi
  if systemctl is-failed --quiet "$unit"; then
    mtm_node_fail "$unit failed after the restart; last TLS check: $last"
  fi
  now=$(date +%s)
  if [ $((now - start)) -ge "$limit" ]; then
    mtm_node_fail "$unit did not answer over TLS on $url within $limit s; last TLS check: $last"
  fi
  sleep @poll_seconds@
done

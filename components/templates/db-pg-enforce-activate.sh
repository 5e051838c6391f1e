cd /
@reload@
if ! grep -qxF @line@ @hba_file@; then echo 'reloaded'; exit 0; fi
mtm_n=0
while :; do
  mtm_out=$(psql -X -w @conninfo@ -c '' 2>&1 </dev/null || true)
  case "$mtm_out" in *"no encryption"*) break ;; esac
  mtm_n=$((mtm_n + 1))
  if [ "$mtm_n" -ge @wait_seconds@ ]; then
    echo "a plain login of "@user@" is not refused after the reload:"; printf '%s\n' "$mtm_out"; exit 1
  fi
  sleep 1
done
echo "plain logins of "@user@" are refused"

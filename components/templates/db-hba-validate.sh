cd /
if mtm_out=$(@local_sql@ -At -c @setting@ 2>&1 </dev/null); then
  if [ "$mtm_out" != @hba_file@ ]; then
    echo "the server reads $mtm_out, not "@hba_file@": set database.configDir to the cluster's directory"; exit 1
  fi
  mtm_out=$(@local_sql@ -At -c @errors@ </dev/null)
  if [ -n "$mtm_out" ]; then echo "pg_hba.conf has errors:"; printf '%s\n' "$mtm_out"; exit 1; fi
else
  echo "note: could not ask the running server to check pg_hba.conf"
fi

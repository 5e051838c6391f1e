mtm_n=0
until { @probe@; } >/dev/null 2>&1; do
  mtm_n=$((mtm_n + 1))
  if [ "$mtm_n" -ge @wait_seconds@ ]; then
    echo @name@": does not answer @wait_seconds@ s after @what@"; mtm_db_logs; exit 1
  fi
  sleep 1
done

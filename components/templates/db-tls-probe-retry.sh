    mtm_n=0
    until mtm_out=$({ @tls_probe@; } 2>&1); do
      mtm_n=$((mtm_n + 1))
      if [ "$mtm_n" -ge @probe_seconds@ ]; then
        echo @name@": answers, but does not serve the stack CA's certificate over TLS:"
        printf '%s\n' "$mtm_out" | tail -n 8; mtm_db_logs; exit 1
      fi
      sleep 1
    done

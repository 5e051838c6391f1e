    if ! mtm_out=$({ @tls_probe@; } 2>&1); then
      echo @name@": answers, but does not serve the stack CA's certificate over TLS:"
      printf '%s\n' "$mtm_out" | tail -n 8; mtm_db_logs; exit 1
    fi

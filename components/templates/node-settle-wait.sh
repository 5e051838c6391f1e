    if [ "$was_tls" = 1 ]; then
      printf '%s\n' "$unit served TLS before this restart: waiting @seconds@ s so NGINX uses it again "\
"before the next node restarts (fail_timeout)"
      sleep @seconds@
    fi

cd /
mtm_db_logs() { echo "--- last log lines of "@name@; { @logs@; } 2>&1 || true; }
if ! { @restart@; } 2>&1; then
  echo @name@": restart failed"; mtm_db_logs; exit 1
fi
@wait_answer@
@tls_check@

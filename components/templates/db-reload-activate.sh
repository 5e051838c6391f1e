cd /
mtm_db_logs() { echo "--- last log lines of "@name@; { @logs@; } 2>&1 || true; }
if { @probe@; } >/dev/null 2>&1; then
  if ! { @reload@; } 2>&1; then
    echo @name@": reload failed"; mtm_db_logs; exit 1
  fi
  mtm_how=reloaded
else
  if ! { @restart@; } 2>&1; then
    echo @name@": restart failed"; mtm_db_logs; exit 1
  fi
  mtm_how=restarted
fi
@wait_answer@
@tls_check@

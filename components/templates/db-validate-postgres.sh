if mtm_out=$(@local_sql@ -At -c @check@ 2>&1 </dev/null); then
  if [ "$mtm_out" != @want@ ]; then
    echo "PostgreSQL would not apply "@config_file@" as written (is include_dir = 'conf.d' in postgresql.conf? is a setting overridden later, e.g. by ALTER SYSTEM?):"
    @local_sql@ -At -c @explain@ </dev/null || true
    exit 1
  fi
else
  echo "note: could not ask the running server about its settings; the TLS probe after the restart decides"
fi

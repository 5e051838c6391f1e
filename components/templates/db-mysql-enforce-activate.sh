cd /
mtm_out=$({ @config_check@; } 2>/dev/null) || { echo 'the server rejects its configuration'; exit 1; }
case "$(printf '%s\n' "$mtm_out" | awk '$1 == "require-secure-transport" { print $2 }')" in
  TRUE|ON|1) mtm_v=ON ;;
  *) mtm_v=OFF ;;
esac
if [ -e @config_file@ ] && [ "$mtm_v" != ON ]; then
  echo "the server would not use "@config_file@" as written (a later option file overrides it?)"; exit 1
fi
@local_sql@ -e "SET GLOBAL require_secure_transport = $mtm_v" </dev/null
mtm_now=$(@local_sql@ -N -B -r -e "SELECT @@GLOBAL.require_secure_transport" </dev/null)
case "$mtm_now" in 1|ON) mtm_now=ON ;; *) mtm_now=OFF ;; esac
[ "$mtm_now" = "$mtm_v" ] || { echo "require_secure_transport is $mtm_now, not $mtm_v"; exit 1; }
echo "require_secure_transport = $mtm_v"

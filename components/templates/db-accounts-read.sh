set -eu
cd /
sql() { @sql_client@ "$@"; }
printf 'skip_name_resolve %s\n' "$(sql -N -B -r -e 'SELECT @@GLOBAL.skip_name_resolve' </dev/null)"
sql -N -B -r -e @query@ </dev/null

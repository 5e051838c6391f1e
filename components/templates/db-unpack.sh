mkdir -p "$state"
chmod 0700 "$state"
tmp=$(mktemp -d "$state/tmp.XXXXXX")
trap @on_exit@ EXIT
printf '%s' "$mtm_admin" | base64 -d > "$tmp/admin" || mtm_fail 'the admin credentials are not valid base64'
printf '%s' "$mtm_sql" | base64 -d > "$tmp/change.sql" || mtm_fail 'the SQL is not valid base64'
unset mtm_admin mtm_sql

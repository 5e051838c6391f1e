umask 077
cd /
state=@state@
who=@who@
mtm_fail() { printf '%s\n' "$who: $*" >&2; exit 1; }
sql() { @sql_client@ "$@"; }
IFS= read -r mtm_admin || mtm_fail 'stdin ended before the admin credentials'
@read_sql@
made=; [ -d "$state" ] || made=1
mkdir -p "$state"
chmod 0700 "$state"
tmp=$(mktemp -d "$state/tmp.XXXXXX")
trap 'rm -rf "$tmp"; if [ -n "$made" ]; then rmdir "$state" 2>/dev/null || true; fi' EXIT
printf '%s' "$mtm_admin" | base64 -d > "$tmp/admin" || mtm_fail 'the admin credentials are not valid base64'
printf '%s' "$mtm_sql" | base64 -d > "$tmp/change.sql" || mtm_fail 'the SQL is not valid base64'
unset mtm_admin mtm_sql
sql < "$tmp/change.sql"
echo "$who: done"

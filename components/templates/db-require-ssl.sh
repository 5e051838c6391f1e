umask 077
cd /
state=@state@
saved=@saved@
@who_and_sql@
IFS= read -r mtm_admin || mtm_fail 'stdin ended before the admin credentials'
@read_rest@
mkdir -p "$state"
chmod 0700 "$state"
tmp=$(mktemp -d "$state/tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
printf '%s' "$mtm_admin" | base64 -d > "$tmp/admin" || mtm_fail 'the admin credentials are not valid base64'
unset mtm_admin
@run@

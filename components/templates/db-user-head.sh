umask 077
cd /
state=@state@
backup=@backup@
owner=@owner@
@who_and_sql@
IFS= read -r mtm_token || mtm_fail 'stdin ended before the owner token'
IFS= read -r mtm_admin || mtm_fail 'stdin ended before the admin credentials'
IFS= read -r mtm_sql || mtm_fail 'stdin ended before the SQL'
token=$(printf '%s' "$mtm_token" | base64 -d) || mtm_fail 'the owner token is not valid base64'
case "$token" in ''|*[!A-Za-z0-9_-]*) mtm_fail 'the owner token must be [A-Za-z0-9_-]' ;; esac

umask 077
cd /
state=@state@
@who_and_sql@
IFS= read -r mtm_admin || mtm_fail 'stdin ended before the admin credentials'
@read_sql@
made=; [ -d "$state" ] || made=1
@unpack@
sql < "$tmp/change.sql"
echo "$who: done"

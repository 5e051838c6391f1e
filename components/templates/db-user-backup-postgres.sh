mtm_db=$(sql -At -c @exists_db@ </dev/null)
[ "$mtm_db" = 1 ] || mtm_fail @missing_db@
if [ ! -e "$backup" ]; then
  if [ "$(sql -At -c @exists_role@ </dev/null)" = 1 ]; then
    sql -At -c @role@ > "$tmp/backup.sql" </dev/null
    grep -q . "$tmp/backup.sql" || mtm_fail 'could not read the role from pg_authid (the admin must be a superuser)'
  else
    sql -At -c @owner_back@ > "$tmp/backup.sql" </dev/null
    printf '%s\n' @drop_created@ >> "$tmp/backup.sql"
  fi
  mv -f "$tmp/backup.sql" "$backup"
  echo "$who: previous state saved in $backup"
fi
sql < "$tmp/change.sql"

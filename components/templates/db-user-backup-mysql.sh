mtm_db=$(sql -N -B -r -e @exists_db@ </dev/null)
[ "$mtm_db" = 1 ] || mtm_fail @missing_db@
if [ ! -e "$backup" ]; then
  printf '%s\n' @drop_new@ > "$tmp/backup.sql"
  sql -N -B -r -e @accounts@ > "$tmp/accounts" </dev/null
  while IFS= read -r mtm_acct; do
    printf 'DROP USER IF EXISTS %s;\n' "$mtm_acct" >> "$tmp/backup.sql"
    sql -N -B -r -e "SET SESSION print_identified_with_as_hex = ON; SHOW CREATE USER $mtm_acct" > "$tmp/create" 2>/dev/null </dev/null || sql -N -B -r -e "SHOW CREATE USER $mtm_acct" > "$tmp/create" </dev/null
    sql -N -B -r -e "SHOW GRANTS FOR $mtm_acct" > "$tmp/grants" </dev/null
    sed 's/$/;/' "$tmp/create" "$tmp/grants" >> "$tmp/backup.sql"
  done < "$tmp/accounts"
  mv -f "$tmp/backup.sql" "$backup"
  echo "$who: previous state of $(wc -l < "$tmp/accounts") account(s) saved in $backup"
fi
sql < "$tmp/change.sql"

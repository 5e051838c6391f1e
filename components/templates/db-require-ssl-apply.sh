printf '%s' "$mtm_prev" | base64 -d > "$tmp/prev" || mtm_fail 'the SELECT is not valid base64'
printf '%s' "$mtm_req" | base64 -d > "$tmp/req" || mtm_fail 'the REQUIRE SSL statements are not valid base64'
unset mtm_prev mtm_req
mtm_mode="SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES';"
{ echo "$mtm_mode"; cat "$tmp/prev"; echo; } | sql -N -B -r > "$tmp/require"
grep -q . "$tmp/require" || mtm_fail 'does not exist on the server'
touch "$saved"
cp "$saved" "$tmp/saved"
while IFS= read -r mtm_line; do
  mtm_acct=${mtm_line%% REQUIRE *}
  grep -qF -- "$mtm_acct REQUIRE " "$saved" || printf '%s\n' "$mtm_line" >> "$tmp/saved"
done < "$tmp/require"
mv -f "$tmp/saved" "$saved"
{ echo "$mtm_mode"; cat "$tmp/req"; echo; } | sql
echo "$who: logs in with TLS only ($(wc -l < "$tmp/require") account(s))"

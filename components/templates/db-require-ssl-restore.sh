{ echo "SET SESSION sql_mode = '';"; cat "$saved"; } | sql
rm -f "$saved"
rm -rf "$tmp"
trap - EXIT
rmdir "$state" 2>/dev/null || true
echo "$who: previous REQUIRE flags restored"

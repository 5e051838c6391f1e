@run_backup@
rm -f "$backup" "$owner"
rm -rf "$tmp"
trap - EXIT
rmdir "$state" 2>/dev/null || true
echo "$who: previous state restored"

if [ "$(cat "$owner" 2>/dev/null || true)" != "$token" ]; then
  echo "$who: owned by another resource now (or already restored); left as it is"
  exit 0
fi
[ -e "$backup" ] || mtm_fail "the backup $backup is missing; the user is left as it is (remove $owner to let this delete pass)"

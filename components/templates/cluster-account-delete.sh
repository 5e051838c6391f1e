user=@user@
marker=@marker@
state=@state@
if [ -e "$marker" ]; then
  if getent passwd "$user" >/dev/null; then
    pkill -u "$user" 2>/dev/null || true
    userdel --remove "$user" 2>/dev/null || userdel "$user"
  fi
  for f in passwd- group- shadow- gshadow-; do
    if [ -e "$marker.orig/$f" ]; then cp -a "$marker.orig/$f" "/etc/$f"; fi
    if [ -e "$marker.orig/$f.absent" ]; then rm -f "/etc/$f"; fi
  done
  rm -rf "$marker" "$marker.orig"
  rmdir "$state" 2>/dev/null || true
  echo "$user: removed"
fi

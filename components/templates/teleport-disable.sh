before=$(cat @marker@ 2>/dev/null || echo 'disabled inactive')
case "$before" in
  enabled*) ;;
  *)
    if [ "$(systemctl is-enabled @unit@ 2>/dev/null || true)" = enabled ]; then systemctl disable @unit@; fi
    ;;
esac
case "$before" in
  *' active') ;;
  *)
    if systemctl is-active --quiet @unit@; then systemctl stop @unit@; fi
    ;;
esac
rm -f @marker@
rmdir @state@ 2>/dev/null || true

for u in @units@; do
  if systemctl is-active --quiet "$u"; then systemctl reload "$u"; exit 0; fi
done

set -eu
site=@site@
transitional=@transitional@
service=@service@
seconds=@seconds@
if [ -f "$site" ] && grep -qxF "$transitional" "$site"; then
  sed -e @sed@ "$site" > "$site.mtm-drain"
  if ! cmp -s "$site" "$site.mtm-drain"; then
    cp -p "$site" "$site.mtm-undrain"
    cat "$site.mtm-drain" > "$site"
    if nginx -t >/dev/null 2>&1 && systemctl reload "$service"; then
      sleep "$seconds"
    else
      cat "$site.mtm-undrain" > "$site"
    fi
    rm -f "$site.mtm-undrain"
  fi
  rm -f "$site.mtm-drain"
fi

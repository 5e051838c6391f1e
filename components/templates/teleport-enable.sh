mkdir -p @state@
chmod 0700 @state@
if [ ! -e @marker@ ]; then
  e=$(systemctl is-enabled @unit@ 2>/dev/null || true)
  a=$(systemctl is-active @unit@ 2>/dev/null || true)
  printf '%s %s\n' "${e:-unknown}" "${a:-unknown}" > @marker@.new
  mv -f @marker@.new @marker@
fi
systemctl daemon-reload
if [ "$(systemctl is-enabled @unit@ 2>/dev/null || true)" != enabled ]; then systemctl enable @unit@; fi
if [ -x @binary@ ]; then
  echo @present@
else
  echo @absent@@start@
fi

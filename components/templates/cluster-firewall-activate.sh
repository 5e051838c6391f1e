systemctl daemon-reload
if [ -e @unit_file@ ]; then
  if systemctl is-active --quiet @unit@; then systemctl reload @unit@; else systemctl start @unit@; fi
  @iptables@ -w -t nat -C OUTPUT -j @nat_chain@
  @iptables@ -w -t filter -C INPUT -j @in_chain@
else
  systemctl stop @unit@ 2>/dev/null || true
  systemctl reset-failed @unit@ 2>/dev/null || true
@firewall_stop@
fi

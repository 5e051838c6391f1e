while @iptables@ -w -t nat -D OUTPUT -j @nat_chain@ 2>/dev/null; do :; done
while @iptables@ -w -t filter -D INPUT -j @in_chain@ 2>/dev/null; do :; done
if @iptables@ -w -t nat -n -L @nat_chain@ >/dev/null 2>&1; then @iptables@ -w -t nat -F @nat_chain@; @iptables@ -w -t nat -X @nat_chain@; fi
if @iptables@ -w -t filter -n -L @in_chain@ >/dev/null 2>&1; then @iptables@ -w -t filter -F @in_chain@; @iptables@ -w -t filter -X @in_chain@; fi

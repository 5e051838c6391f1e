systemctl daemon-reload
if [ -x @helper@ ]; then @helper@ tunnels-apply; else systemctl stop @instances@ 2>/dev/null || true; fi

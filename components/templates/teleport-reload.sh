systemctl daemon-reload
if [ -e @unit_file@ ]; then systemctl try-restart @unit@; fi

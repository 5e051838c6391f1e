systemctl daemon-reload
if [ -e @target_file@ ]; then
  systemctl start @timer@
else
  systemctl stop @timer@ @heal_service@ @target@ 2>/dev/null || true
  systemctl reset-failed @timer@ @heal_service@ 2>/dev/null || true
fi

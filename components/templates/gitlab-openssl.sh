o=$(command -v openssl 2>/dev/null || true)
[ -n "$o" ] || o=@embedded_openssl@

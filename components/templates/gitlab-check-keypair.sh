if [ ! -x "$o" ]; then echo 'no openssl on this host: certificate/key pair not checked'; exit 0; fi
c=$("$o" x509 -noout -pubkey -in @cert@)
k=$("$o" pkey -pubout -in @key@)
[ "$c" = "$k" ] || { echo @mismatch@ >&2; exit 1; }

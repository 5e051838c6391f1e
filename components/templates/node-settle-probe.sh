was_tls=0
if curl --silent --fail --noproxy '*' --proto '=https' --tlsv1.2 --max-time 3 \
    --cacert "$ca" --resolve "$resolve" --output /dev/null "$url" 2>/dev/null; then was_tls=1; fi

set -eu
service=@service@
url=@url@
resolve=@resolve@
limit=@limit@
errlog=@error_log@
systemctl reload "$service"
if ! command -v curl >/dev/null 2>&1; then
  printf '%s\n' "$service reloaded; curl is not installed, so the site was not checked end to end"
  exit 0
fi
start=$(date +%s)
while :; do
  if last=$(curl --silent --show-error --fail --noproxy '*' --proto '=https' --max-time 10 @trust@ \
      --resolve "$resolve" --output /dev/null "$url" 2>&1); then
    printf '%s\n' "$service reloaded; $url @answers@"
    exit 0
  fi
  now=$(date +%s)
  if [ $((now - start)) -ge "$limit" ]; then
    printf '%s\n' "$url does not answer through the new configuration within $limit s: $last" >&2
    if [ -r "$errlog" ]; then
      printf '%s\n' "--- tail -n 20 $errlog ---" >&2
      tail -n 20 "$errlog" >&2 || true
    fi
    exit 1
  fi
  sleep 1
done

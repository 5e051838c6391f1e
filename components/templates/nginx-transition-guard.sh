site=@site@
if ! [ -f "$site" ] || grep -qxF @final@ "$site" || { ! grep -qxF @transitional@ "$site" &&
    ! grep -Eq '^[[:space:]]*proxy_pass[[:space:]]+http://' "$site" && {
    ! grep -Eq '^[[:space:]]*proxy_pass[[:space:]]+https://' "$site" ||
    grep -Eq '^[[:space:]]*proxy_ssl_verify[[:space:]]+on;' "$site"; }; }; then
  printf '%s\n' @owner@": $site proxies over neither plain HTTP nor unverified TLS; no transitional site needed"
  exit 0
fi

user=@user@
home=@home@
marker=@marker@
state=@state@
nologin=@nologin@
if getent passwd "$user" >/dev/null; then
  if [ ! -e "$marker" ]; then
    shell=$(getent passwd "$user" | cut -d: -f7)
    case "$shell" in
      */nologin|*/false) echo "$user: existing account without a login shell, used as it is" ;;
      *) echo "account $user already exists with the login shell $shell; it must not be the tunnel account: set cluster.tunnelUser to an unused name (the default is mmtunnel)" >&2; exit 1 ;;
    esac
  fi
else
  mkdir -p "$marker.orig"
  chmod 0700 "$state" "$marker.orig"
  for f in passwd- group- shadow- gshadow-; do
    if [ -e "/etc/$f" ]; then cp -a "/etc/$f" "$marker.orig/$f"; else : > "$marker.orig/$f.absent"; fi
  done
  useradd --system --user-group --home-dir "$home" --create-home --shell "$nologin" --comment "Mattermost cluster SSH tunnels" "$user"
  usermod -p '*' "$user"
  : > "$marker"
  echo "$user: created"
fi

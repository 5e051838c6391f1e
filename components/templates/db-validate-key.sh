cd /
if ! runuser -u @server_user@ -- test -r @key@; then
  echo "the server user @server_user@ cannot read "@key@; exit 1
fi

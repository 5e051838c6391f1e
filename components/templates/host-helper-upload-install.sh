set -eu
up="$HOME"/@upload@
[ -f "$up" ] || up=/dev/null
@install@ < "$up"
[ "$up" = /dev/null ] || rm -f -- "$up"

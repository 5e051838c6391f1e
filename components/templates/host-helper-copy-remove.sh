set -eu
rm -f -- "$HOME"/@upload@

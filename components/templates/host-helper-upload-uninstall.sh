set -eu
@uninstall@
rm -f -- "$HOME"/@upload@

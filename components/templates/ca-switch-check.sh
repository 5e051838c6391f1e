set -eu
host=@host@
generation=@generation@
expected=@expected@
files=@files@
missing=""
old_ifs=$IFS
IFS='
'
set -f
for f in $files; do
    if [ ! -r "$f" ]; then
        missing="$missing $f (absent)"
    elif ! tr -d ' \t\r\n' <"$f" | grep -qF -- "$expected"; then
        missing="$missing $f"
    fi
done
set +f
IFS=$old_ifs
if [ -n "$missing" ]; then
    echo "ca.rotation is 'switch', but CA generation $generation is not yet trusted on $host:$missing." >&2
    echo "switch re-issues every server certificate from that CA; a verifier that does not trust it would refuse its peer, so nothing was changed." >&2
    echo "Fix: apply the stage phase first (pulumi config set --path ca.rotation stage && pulumi up), then set ca.rotation back to switch." >&2
    exit 1
fi
echo "CA generation $generation trusted in every trust file on $host"

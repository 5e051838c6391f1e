set -eu
umask 022
d=@dir@
f=@helper@
[ -d "$d" ] || mkdir -m 0755 "$d"
IFS= read -r head
base64 -d | gzip -dc > "$f.new"
sha=$(sha256sum < "$f.new" | cut -c1-64)
case "$head" in *" sha256 $sha "*) ;; *) rm -f "$f.new"; echo "host helper: damaged input ($head)" >&2; exit 1 ;; esac
chmod 0755 "$f.new"
mv -f "$f.new" "$f"
echo "host helper $f: sha256 $sha"

dump=$(mktemp)
trap 'rm -f "$dump"' EXIT
if ! nginx -T > "$dump" 2>/dev/null; then
  nginx -t >&2 || true
  echo "nginx -T failed: NGINX's live configuration does not load; fix it first" >&2
  exit 1
fi
printf '%s\n' @files_mark@
sed -n 's/^# configuration file \(.*\):$/\1/p' "$dump" | while IFS= read -r f; do
  printf 'file\t%s\t%s\n' "$f" "$(readlink -f "$f")"
done
printf '%s\n' @dump_mark@
cat "$dump"

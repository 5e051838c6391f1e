printf '%s\n' "$token" > "$owner.new"
mv -f "$owner.new" "$owner"
echo "$who: ready (TLS offered; required once the enforce step ran)"

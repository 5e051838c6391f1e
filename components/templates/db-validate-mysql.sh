if ! mtm_out=$({ @config_check@; } 2>&1); then
  echo 'the server rejects its configuration:'; printf '%s\n' "$mtm_out" | grep -v '^ ' | tail -n 20; exit 1
fi
mtm_got=$(printf '%s\n' "$mtm_out" | awk '$1 == "ssl-ca" || $1 == "ssl-cert" || $1 == "ssl-key" { print $1 "=" $2 }' | sort)
if [ "$mtm_got" != @want@ ]; then
  echo "the server would not use "@config_file@" as written (a later option file overrides it?); it would start with:"
  printf '%s\n' "$mtm_got"; exit 1
fi

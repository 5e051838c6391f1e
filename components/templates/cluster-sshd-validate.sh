sshd -t
eff=$(sshd -T -C user=@user@,host=mm-cluster-check,addr=@address@)
printf '%s\n' "$eff" | grep -qxF @keys@ || { echo @keys_missing@ >&2; exit 1; }
printf '%s\n' "$eff" | grep -qxF @forwarding@ || { echo @forwarding_missing@ >&2; exit 1; }
printf '%s\n' "$eff" | grep -qxF @permitopen@ || { echo @permitopen_missing@ >&2; exit 1; }

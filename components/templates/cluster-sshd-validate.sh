user=@user@
address=@address@
permitopen=@permitopen@
keys=@keys@
dropin=@dropin@
include=@include@
sshd -t
eff=$(sshd -T -C "user=$user,host=mm-cluster-check,addr=$address")
for want in "authorizedkeysfile $keys" 'allowtcpforwarding local' "$permitopen"; do
  printf '%s\n' "$eff" | grep -qxF "$want" || { echo "sshd does not apply $dropin (expected: $want); make sure sshd_config has: $include" >&2; exit 1; }
done

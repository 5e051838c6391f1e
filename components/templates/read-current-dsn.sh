umask 077
unit=@unit@
cfg=@config@
envfile=@env_file@
b64() { base64 | tr -d '\n'; echo; }
proc=''
pid=$(systemctl show -p MainPID --value "$unit" 2>/dev/null || true)
case "$pid" in ''|0|*[!0-9]*) pid='' ;; esac
if [ -n "$pid" ] && [ -r "/proc/$pid/environ" ]; then
  proc=$(tr '\000' '\n' < "/proc/$pid/environ" | grep -i '^mm_sqlsettings_' || true)
  own=$(tr '\000' '\n' < "/proc/$pid/environ" | sed -n 's/^MM_CONFIG=//p' | head -n 1)
  case "$own" in /*) [ -r "$own" ] && cfg=$own ;; esac
fi
printf '%s' "$proc" | b64
if [ -r "$envfile" ]; then grep -i '^mm_sqlsettings_' "$envfile" | b64 || echo; else echo; fi
if [ -r "$cfg" ]; then b64 < "$cfg"; else echo; fi

if [ ! -x "$o" ]; then exit 0; fi
linked=0 current=0
h=$("$o" x509 -hash -noout -in @ca_file@)
for l in @ca_dir@/*.[0-9]*; do
  if [ -L "$l" ] && [ "$(readlink "$l")" = @ca_name@ ]; then
    linked=1
    case "${l##*/}" in "$h".[0-9]*) current=1 ;; esac
  fi
done
if [ "$linked" = 1 ] && [ "$current" = 0 ]; then gitlab-ctl reconfigure; fi

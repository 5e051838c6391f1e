if gitlab-ctl status nginx >/dev/null 2>&1; then gitlab-ctl hup nginx; fi

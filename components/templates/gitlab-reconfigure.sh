gitlab-ctl reconfigure
@restart_mattermost@

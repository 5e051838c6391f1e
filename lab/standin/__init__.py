"""The Mattermost stand-in (``mattermost-standin.py`` + the ``mmstandin`` package).

The real Mattermost server binary cannot be installed here, so lab nodes run
this stand-in as ``/opt/mattermost/bin/mattermost``. It reproduces what the
program touches: config.json + ``MM_*`` env overrides, the web listener with
optional TLS, the database connection with the Go drivers' TLS semantics,
refusal to start on bad settings, and ``Type=notify`` readiness.
"""

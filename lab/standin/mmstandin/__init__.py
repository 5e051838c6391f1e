"""A STAND-IN for the Mattermost server, for the mattermost-transport-encryption lab.

Not Mattermost. Python 3 stdlib + pymysql + psycopg2 only. Each concern is a
module; the server wires "subsystems" (database, web, later cluster gossip) in
``server.SUBSYSTEMS`` order.

``VERSION`` is the Mattermost version this copy emulates (what ``mattermost version`` prints
and what decides which settings exist): the ``VERSION`` file beside this package, which the lab
writes per host, so one lab can mix versions; ``DEFAULT_VERSION`` without it.
"""

import os

DEFAULT_VERSION = "11.1.0"


def _own_version() -> str:
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION"), encoding="utf-8") as fh:
            return fh.read().strip() or DEFAULT_VERSION
    except OSError:
        return DEFAULT_VERSION


VERSION = _own_version()

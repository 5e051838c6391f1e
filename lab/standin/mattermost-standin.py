#!/usr/bin/python3
"""Mattermost server STAND-IN for the mattermost-transport-encryption lab (not Mattermost).

Installed on lab nodes as /opt/mattermost/bin/mattermost, with the ``mmstandin``
package beside it. See ``mmstandin/server.py`` for what it does.
"""

import os
import sys

# Mattermost is one Go binary: running it (`mattermost version` in the node preflight, as root)
# writes nothing next to it. The stand-in must not either: no __pycache__ under /opt/mattermost/bin.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from mmstandin.server import main  # noqa: E402 - the path must be set first

if __name__ == "__main__":
    sys.exit(main())

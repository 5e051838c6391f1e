"""A STAND-IN for the Mattermost server, for the mattermost-transport-encryption lab.

Not Mattermost. Python 3 stdlib + pymysql + psycopg2 only. Each concern is a
module; the server wires "subsystems" (database, web, later cluster gossip) in
``server.SUBSYSTEMS`` order.
"""

VERSION = "10.11.0-standin"

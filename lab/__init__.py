"""The lab: real Debian hosts (systemd-nspawn) that the program is applied to.

Owns nothing itself; ``lab.hosts`` owns the hosts, ``lab.standin`` the
Mattermost stand-in, ``lab.replay`` the replay engine.
"""

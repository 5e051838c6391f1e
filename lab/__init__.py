"""The lab: real Debian hosts (systemd-nspawn) that the program is applied to.

Owns nothing itself; ``lab.hosts`` owns the hosts, ``lab.standin`` the
Mattermost stand-in, ``lab.replay`` the replay engine. Beside them, public for
the lab's own code and the tests: ``lab.naming`` (host names, roles, addresses
and the kernel objects' names), ``lab.base_image`` (the cached Debian base the
hosts boot from) and ``lab.seeding`` (each host's staged "before" state).
"""

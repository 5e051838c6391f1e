"""NGINX scaffolding shared by the unit and program tests: what `nginx -T` prints for a site
installed by Mattermost's Ubuntu guide (the capture components/nginx_live.py reads)."""

from __future__ import annotations

from components import nginx_live
from lab import _seed


def guide_capture(site_path: str, real_path: str) -> str:
    """The live-site capture of a proxy whose enabled `site_path` (a link to `real_path`) is the
    guide's site for two nodes, as components/nginx_live.py's capture script prints it."""
    site = _seed.render_guide_site(["10.251.0.101", "10.251.0.102"], "mattermost.lab.internal")
    main = "/etc/nginx/nginx.conf"
    return (
        f"{nginx_live.CAPTURE_FILES}\nfile\t{main}\t{main}\nfile\t{site_path}\t{real_path}\n{nginx_live.CAPTURE_DUMP}\n"
        f"# configuration file {main}:\nhttp {{ include /etc/nginx/sites-enabled/*; }}\n\n"
        f"# configuration file {site_path}:\n{site}\n"
    )

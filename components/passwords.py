"""Password values, decided on plain strings (no Pulumi, no rendering): what a configured
password may contain. The config schema checks `dbPassword`/`dbAdminPassword` with it before any
resource exists; database_render relies on the same rule for its stdin framing."""

from __future__ import annotations


def check_password(value: str, key: str = "dbPassword") -> str:
    """A configured password, or ValueError naming the key. Any printable character is fine
    (quotes, backslashes, '@', ':', '/', spaces, non-ASCII): every consumer here escapes or
    takes it raw. Control characters would break the one-line stdin framing of the admin file,
    Mattermost's environment file and log lines, so they are refused."""
    if not value:
        raise ValueError(f"{key}: the password is empty")
    if len(value) > 1024:
        raise ValueError(f"{key}: the password is longer than 1024 characters")
    bad = sorted({f"U+{ord(c):04X}" for c in value if ord(c) < 32 or 127 <= ord(c) < 160})
    if bad:
        raise ValueError(
            f"{key}: the password contains control characters ({', '.join(bad)}); use printable characters only"
        )
    return value

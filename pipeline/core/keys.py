"""The site's keys: secrets in files only this user reads, made on first use.

    key = site_key("~/.config/orsight/audit.key")      # 32 random bytes, file 0600, folder 0700
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

MIN_BYTES = 16


def site_key(path: str | os.PathLike) -> bytes:
    """The key in ``path``, made (32 random bytes, mode 0600) when absent; OSError when it cannot be read or
    made, ValueError when it is shorter than ``MIN_BYTES``."""
    path = Path(path).expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(32))
    key = path.read_bytes()
    if len(key) < MIN_BYTES:
        raise ValueError(f"key {path} is too short ({len(key)} bytes; {MIN_BYTES} at least)")
    return key

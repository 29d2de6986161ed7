"""Where a publisher listens by default: a socket in a folder only this user may enter.

Loopback TCP is open to every user of the computer; an ``ipc://`` socket in a 0700 folder is not.

    DEFAULT_ENDPOINT                        # ipc://$XDG_RUNTIME_DIR/orsight/live.sock (or /tmp/orsight-UID/...)
    private_socket_folder(Path("/run/user/1000/orsight"))   # made 0700, or TransportError if others may enter
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pipeline.transport.untrusted import TransportError


def private_folder() -> Path:
    """This user's folder for sockets: ``$XDG_RUNTIME_DIR/orsight`` (the session's, 0700), else
    ``/tmp/orsight-UID``; made 0700 when the publisher binds."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "orsight" if runtime else Path(tempfile.gettempdir()) / f"orsight-{os.getuid()}"


# The default: a socket other users of this computer cannot open (loopback TCP is open to all of them)
DEFAULT_ENDPOINT = f"ipc://{private_folder()}/live.sock"


def private_socket_folder(folder: Path) -> None:
    """Make ``folder`` (0700) if it is missing; refuse one that another user owns or others may enter."""
    if not folder.exists():
        try:
            folder.mkdir(mode=0o700, parents=True)
        except OSError as error:
            raise TransportError(f"cannot make the socket folder {folder}: {error.strerror}") from None
        return
    facts = folder.stat()
    if folder == private_folder() and (facts.st_uid != os.getuid() or facts.st_mode & 0o077):
        raise TransportError(f"the socket folder {folder} is not this user's alone (owner {facts.st_uid}, mode "
                             f"{facts.st_mode & 0o777:o}): remove it, or publish elsewhere with --publish")

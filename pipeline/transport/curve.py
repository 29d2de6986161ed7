"""CurveZMQ for endpoints other hosts can reach: encrypted, and only allowed clients get anything.

``orsight keys --out DIR`` makes the key pairs (files 0600): ``server.key(_secret)`` for the
publisher, ``client.key(_secret)`` for a display, and ``clients/`` with the public keys of the
clients allowed (copy another display's ``client.key`` there to allow it too).

    secure_publisher(socket, "keys/")      # before bind: server keys, allow-list of clients/
    secure_subscriber(socket, "keys/")     # before connect: client keys, the server's public key
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from pipeline.transport.untrusted import TransportError

_authenticators: dict[int, ThreadAuthenticator] = {}  # one per context, for the process's lifetime


def make_keys(folder: str | Path) -> Path:
    """Server and client key pairs in ``folder``, the client allowed in ``folder/clients``."""
    folder = Path(folder)
    (folder / "clients").mkdir(parents=True, exist_ok=True)
    for name in ("server", "client"):
        public, secret = zmq.auth.create_certificates(str(folder), name)
        os.chmod(secret, 0o600)  # whoever reads it can pose as this end
    shutil.copy(public, folder / "clients" / "client.key")
    return folder


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as error:
        kind = "secret" if secret else "public"
        raise TransportError(f"cannot read the {kind} key {path}: {error} (make keys with `orsight keys`)") from None


def secure_publisher(socket: zmq.Socket, folder: str | Path) -> None:
    """Make ``socket`` a CURVE server that accepts only the clients whose public keys are in ``folder/clients``."""
    folder = Path(folder)
    if not (folder / "clients").is_dir():
        raise TransportError(f"no allow-list of clients in {folder / 'clients'} (make keys with `orsight keys`)")
    context = socket.context
    if id(context) not in _authenticators:
        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        _authenticators[id(context)] = authenticator
    _authenticators[id(context)].configure_curve(domain="*", location=str(folder / "clients"))
    public, secret = _load(folder / "server.key_secret", secret=True)
    socket.curve_publickey, socket.curve_secretkey, socket.curve_server = public, secret, True


def secure_subscriber(socket: zmq.Socket, folder: str | Path) -> None:
    """Make ``socket`` a CURVE client with ``folder``'s client keys, talking to ``folder``'s server."""
    folder = Path(folder)
    public, secret = _load(folder / "client.key_secret", secret=True)
    server, _ = _load(folder / "server.key", secret=False)
    socket.curve_publickey, socket.curve_secretkey, socket.curve_serverkey = public, secret, server

"""Which ``.pt`` checkpoints may be loaded: a ``.pt`` is a pickle, and loading one runs its code.

Ultralytics loads checkpoints with ``weights_only=False``, so a crafted file executes whatever it
carries. orsight loads a ``.pt`` only when it is trusted: shipped inside this package, written
by ``orsight train`` here, or trusted by hand (``orsight trust FILE.pt``, after checking where
it came from). Trust is by full SHA-256, listed in ``ORSIGHT_TRUSTED_MODELS`` (default
``~/.config/orsight/trusted-models.txt``). ONNX files hold no code and need no trust.

    require_trusted("best.pt")      # ModelError unless trusted
    trust("best.pt")                # add its SHA-256 to the list
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

SHIPPED = Path(__file__).parents[1] / "models"


class UntrustedModel(Exception):
    """A ``.pt`` file that is not on the trusted list."""


def trust_file() -> Path:
    return Path(os.environ.get("ORSIGHT_TRUSTED_MODELS", Path.home() / ".config" / "orsight" / "trusted-models.txt"))


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def shipped_hashes() -> frozenset[str]:
    """The checkpoints that come with this package (hashed once per process)."""
    return frozenset(sha256(p) for p in SHIPPED.glob("*.pt"))


def trusted_hashes() -> set[str]:
    lines = trust_file().read_text().splitlines() if trust_file().is_file() else []
    listed = {line.split()[0] for line in lines if line.strip() and len(line.split()[0]) == 64}
    return listed | shipped_hashes()


def require_trusted(path: str | Path) -> None:
    """Return quietly if ``path`` may be loaded; :class:`UntrustedModel` otherwise."""
    if sha256(path) not in trusted_hashes():
        raise UntrustedModel(f"refusing to load {path}: a .pt file runs code when it is loaded, and this one is not "
                             f"trusted. Use an ONNX export of it, or if you know where it came from: orsight trust {path}")


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint dictionary of a trusted ``.pt`` (torch), :class:`UntrustedModel` otherwise."""
    import torch

    require_trusted(path)
    # weights_only cannot load it: an ultralytics checkpoint pickles the model object itself (its classes
    # and their code), not only tensors. Hence the trust: the file's hash was checked above.
    return torch.load(str(path), map_location="cpu", weights_only=False)


def trust(path: str | Path) -> str:
    """Add ``path``'s SHA-256 to the trusted list (created 0600); returns the hash."""
    digest = sha256(path)
    if digest not in trusted_hashes():
        file = trust_file()
        file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(descriptor, "a") as listing:
            listing.write(f"{digest}  {Path(path).resolve()}\n")
    return digest

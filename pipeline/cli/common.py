"""What every ``orsight`` command shares: one-line errors (exit status 2), argument types, JSON out."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

EXIT_BAD_INPUT = 2
MAX_SIDE = 8192  # pixels: frames up to 8K
STRIDE = 32  # a model input side is a multiple of the deepest stride
MODEL_HELP = ".onnx or .pt (default: the shipped model, its int8 twin on the CPU)"


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


def writable(path: str | Path | None, what: str, folder: bool = False) -> None:
    """Fail now, in one line, if ``path`` cannot be written (not after a whole run): its folder is
    made if need be and a scratch file is written there."""
    if path is None:
        return
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file, not a folder")
    if not folder and path.is_dir():
        raise UsageError(f"{what} {path} is a folder, not a file")
    try:
        (path if folder else path.parent).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path if folder else path.parent):
            pass
    except OSError as error:
        raise UsageError(f"cannot write {what} {path}: {error.strerror}") from None


class HelpFormatter(argparse.HelpFormatter):
    """Each option's default after its help, unless there is none or the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """Errors in one line (not usage + message); every option's default shown in its help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        print(f"orsight: error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def positive(text: str) -> float:
    """A number above zero."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number above zero."""
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0, not {text!r}")
    return int(text)


def int_between(low: int, high: int):
    """An argparse type: a whole number from ``low`` to ``high``."""
    def whole_number(text: str) -> int:
        try:
            if low <= (value := int(text)) <= high:
                return value
        except ValueError:
            pass
        raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, not {text!r}")
    return whole_number


def size_arg(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, not {text!r}") from None
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise argparse.ArgumentTypeError(f"size must be between 1x1 and {MAX_SIDE}x{MAX_SIDE}, not {text!r}")
    return width, height


def input_size_arg(text: str) -> int | tuple[int, int]:
    """A model input: one side (square) or WIDTHxHEIGHT, each side rounded up to a multiple of the
    models' deepest stride (32), with a note, as ultralytics does."""
    if "x" in text.lower():
        sides = size_arg(text)
    elif not text.isdigit() or not 0 < int(text) <= MAX_SIDE:
        raise argparse.ArgumentTypeError(f"input size must be N (1-{MAX_SIDE}) or WIDTHxHEIGHT, not {text!r}")
    else:
        sides = (int(text),)
    rounded = tuple(max(STRIDE, -(-side // STRIDE) * STRIDE) for side in sides)
    if rounded != sides:
        print(f"orsight: --imgsz {text}: sides must be multiples of {STRIDE}, using {'x'.join(map(str, rounded))}",
              file=sys.stderr)
    return rounded if len(rounded) == 2 else rounded[0]


def pairs(text: str, what: str) -> dict[int, int]:
    """``A:B,C:D`` -> ``{A: B, C: D}``."""
    try:
        return {int(a): int(b) for a, b in (pair.split(":") for pair in text.split(",") if pair)}
    except ValueError:
        raise UsageError(f"{what} must be VALUE:CLASS pairs separated by commas, not {text!r}") from None


def integers(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v)
    except ValueError:
        raise UsageError(f"{what} must be numbers separated by commas, not {text!r}") from None


def floats(text: str, what: str, count: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise UsageError(f"{what} must be {count} numbers separated by commas, not {text!r}")
    return values


def stop_display(process, settle_s: float = 1.0, timeout: float = 60) -> int:
    """Stop a display process as its operator would (SIGTERM), after ``settle_s`` for what is in flight
    (a display never ends with its publisher); its exit status."""
    time.sleep(settle_s)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when CuPy sees a CUDA device, else ``cpu``; ``cuda`` must exist."""
    try:
        import cupy

        has_cuda = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # CuPy missing, or no driver/device
        has_cuda = False
    if device == "cuda" and not has_cuda:
        raise UsageError("--device cuda: no CUDA device found (or CuPy is not installed: pip install orsight[gpu])")
    return "cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu"


def write_json(path: str | Path, data: dict) -> None:
    """Write JSON atomically: a half-written file never carries the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, suffix=".partial", delete=False) as f:
        json.dump(data, f, indent=2)
    os.replace(f.name, path)

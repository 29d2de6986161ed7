"""The audit log: append-only JSONL of every alert transition, hash-chained so that a deleted,
inserted or edited line is detected (``orsight audit verify FILE``).

Each line carries the run's id, its place in the run, the identity of the model and the
configuration in force, and ``prev``: the SHA-256 of the line before it in the file (the first
line's is 64 zeros); with a ``key`` (the site's audit key, held apart from the log: ``audit_key``),
an HMAC-SHA256 of it instead (``"chain": "hmac"``), so that whoever can write the file cannot
recompute the chain after an edit. A run ends with a ``close`` record. Every line is written
whole, at once, and flushed: a crash leaves every written line complete.

    audit = AuditLog("audit.jsonl", identity={"model_sha256": ...}, key=audit_key())
    audit.write(event); head = audit.close()     # the run's last link: kept in its summary
    problems = verify("audit.jsonl", key)        # [] when intact
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
import uuid

from pipeline.core.keys import site_key
from pipeline.core.packet import AlertEvent

GENESIS = "0" * 64
AUDIT_KEY = "~/.config/orsight/audit.key"


def _digest(line: bytes, key: bytes | None = None) -> str:
    body = line.rstrip(b"\n")
    return hmac.new(key, body, hashlib.sha256).hexdigest() if key else hashlib.sha256(body).hexdigest()


def audit_key(path: str | os.PathLike | None = None) -> bytes:
    """The site's audit key (default ``~/.config/orsight/audit.key``), made (32 random bytes, 0600) when
    absent. Keep it where the log's writers cannot change it."""
    return site_key(path or AUDIT_KEY)


def _last_line(path: str) -> bytes | None:
    """The file's last line (read from the end), or None for an empty or new file."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        position, tail = file.tell(), b""
        while position > 0 and tail.count(b"\n") < 2:
            step = min(4096, position)
            position -= step
            file.seek(position)
            tail = file.read(step) + tail
    return tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]


class AuditLog:
    """Append-only, hash-chained JSONL of every alert transition (created 0600)."""

    def __init__(self, path: str | os.PathLike, identity: dict | None = None, key: bytes | None = None):
        self.path, self.identity, self.key = os.fspath(path), identity or {}, key
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        last = _last_line(self.path)
        self.previous = GENESIS if last is None else _digest(last, key)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(self.fd, 0o600)  # an existing log readable by others (0644) is made this user's only
        self.run_id, self.index = uuid.uuid4().hex, 0
        self.lock = threading.Lock()

    def _append(self, record: dict) -> None:
        with self.lock:
            record = {"run_id": self.run_id, "index": self.index, "t_wall_ns": time.time_ns(), **record,
                      **self.identity, **({"chain": "hmac"} if self.key else {}), "prev": self.previous}
            line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
            os.write(self.fd, line)  # one write of one line on an O_APPEND file: never interleaved
            os.fsync(self.fd)
            self.previous, self.index = _digest(line, self.key), self.index + 1

    def write(self, event: AlertEvent, displayable: bool = True) -> None:
        """One alert transition; ``displayable``: it reached the displays fresh enough to be shown
        (a result older than the stale limit is hidden by every display)."""
        self._append({"record": "alert", **event.to_dict(), "displayable": displayable})

    def close(self) -> str:
        """End the run with its close record; returns the chain's last link (the run's head), which a
        summary kept apart can anchor."""
        self._append({"record": "close", "lines": self.index})
        os.close(self.fd)
        return self.previous


def verify(path: str | os.PathLike, key: bytes | None = None) -> list[str]:
    """What is wrong with the log, line by line; ``[]`` when every line follows the one before, every run's
    lines are numbered without a gap and every run ends on its close record with its line count. An empty
    log, or a run without its close record (a crash, or its last lines cut: the log cannot tell), is wrong."""
    problems, before, runs = [], None, {}
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            try:
                record = json.loads(line)
            except ValueError:
                problems.append(f"line {number}: not a JSON record")
                before = line
                continue
            signed = record.get("chain") == "hmac"
            if signed and key is None:
                problems.append(f"line {number}: signed with the audit key, which was not given")
            elif record.get("prev") != (GENESIS if before is None else _digest(before, key if signed else None)):
                problems.append(f"line {number}: does not follow line {number - 1} (a line was removed, added or "
                                "edited before it)")
            before = line
            problems += _run_order(runs, record, number)
    if not runs and not problems:
        problems.append("empty: no record at all")
    problems += [f"run {run_id}: no close record after line {last} (the run crashed, or its last lines were cut)"
                 for run_id, (_, last, closed) in runs.items() if not closed]
    return problems


def _run_order(runs: dict, record: dict, number: int) -> list[str]:
    """A record's place in its run: the next index, and a close record that counts the run's lines."""
    run_id = record.get("run_id", "?")
    expected, _, closed = runs.get(run_id, (0, 0, False))
    found = []
    if closed:
        found.append(f"line {number}: run {run_id} goes on after its close record")
    if record.get("index") != expected:
        found.append(f"line {number}: run {run_id} line {record.get('index')} where {expected} was due "
                     "(lines of the run are missing)")
    is_close = record.get("record") == "close"
    if is_close and record.get("lines") != expected:
        found.append(f"line {number}: run {run_id} closes with {record.get('lines')} lines, {expected} were written")
    runs[run_id] = (expected + 1, number, is_close)
    return found

"""CPU plan of a host that runs the AI beside the video path: a core of its own for the AI thread.

On a busy 2-core computer the AI thread otherwise shares its core with whatever wakes there: the
capture, the decoder and the display preempt it (it runs nicer than they do), and the other
process lands beside it as often as not. With the AI thread alone on the highest-numbered CPU the
process may use, and every other orsight thread (and a display on this host) on the others, the
kernel puts other work on those: beside one busy process the AI went from 20-28 to 30-31 fps
(1080p60, three interleaved pairs; README, "Under load").

    cores = split_cores()                  # CoreSplit(ai={1}, video={0}); None under 2 CPUs
    with threads_on(cores.video):          # every thread of this process, and those it starts
        ... pin_this_thread(cores.ai)      # in the AI thread
    with threads_on(display_cpus(endpoint)):   # `orsight display`: off the AI's CPU on the AI's host
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import NamedTuple

from pipeline.transport.zeromq import LOCAL_PREFIXES


class CoreSplit(NamedTuple):
    """CPUs for the AI thread and for everything else (capture, decode, publish, display)."""

    ai: set[int]
    video: set[int]


def split_cores() -> CoreSplit | None:
    """The highest-numbered allowed CPU for the AI, the rest for the video path; None where fewer
    than two CPUs are allowed (nothing to split) or the platform has no CPU affinity."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None
    if len(allowed) < 2:
        return None
    ai = max(allowed)
    return CoreSplit({ai}, allowed - {ai})


def move_threads(cpus: set[int]) -> None:
    """Every thread of this process onto ``cpus``; threads it starts later inherit them.
    Threads that ended meanwhile are skipped; quietly nothing where not permitted."""
    for task in os.listdir("/proc/self/task"):
        _pin(int(task), cpus)


def pin_this_thread(cpus: set[int]) -> None:
    """The calling thread onto ``cpus`` (quietly nothing where not permitted)."""
    _pin(threading.get_native_id(), cpus)


def _pin(thread: int, cpus: set[int]) -> None:
    try:
        os.sched_setaffinity(thread, cpus)
    except OSError:  # ended meanwhile, or not ours to move
        pass


@contextmanager
def threads_on(cpus: set[int] | None):
    """Every thread of this process (and those started inside) on ``cpus`` while inside; as before after.
    ``None``: left as they are."""
    if cpus is None:
        yield
        return
    allowed = os.sched_getaffinity(0)
    move_threads(cpus)
    try:
        yield
    finally:
        move_threads(allowed)


def display_cpus(endpoint: str) -> set[int] | None:
    """Where a display of ``endpoint``'s publisher runs: off the CPU ``orsight run`` gives its AI when the
    publisher is on this host; None (anywhere) otherwise."""
    cores = split_cores() if endpoint.startswith(LOCAL_PREFIXES) else None
    return cores.video if cores is not None else None

"""The AI's own CPU: the split, moving every thread of the process and giving it back, the display's side."""
import os
import threading

import pytest

from pipeline.runtime.cores import display_cpus, split_cores, threads_on
from tests.helpers import can_split_cpus

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux CPU affinity")
ALLOWED = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
two_cpus = pytest.mark.skipif(not can_split_cpus(), reason="needs two CPUs and leave to move threads between them")


@two_cpus
def test_the_ai_gets_the_last_allowed_cpu_and_the_video_path_the_others():
    cores = split_cores()
    assert cores.ai == {max(ALLOWED)} and cores.video == ALLOWED - {max(ALLOWED)}


@two_cpus
def test_one_allowed_cpu_is_not_split():
    os.sched_setaffinity(0, {min(ALLOWED)})
    try:
        assert split_cores() is None
    finally:
        os.sched_setaffinity(0, ALLOWED)


@two_cpus
def test_every_thread_moves_while_inside_and_goes_back_after():
    release, seen = threading.Event(), {}
    before = threading.Thread(target=release.wait)
    before.start()
    try:
        with threads_on({min(ALLOWED)}):
            during = threading.Thread(target=lambda: seen.update(cpus=os.sched_getaffinity(0)))
            during.start()
            during.join()
            assert os.sched_getaffinity(before.native_id) == {min(ALLOWED)}  # started earlier, moved too
            assert os.sched_getaffinity(0) == seen["cpus"] == {min(ALLOWED)}  # started inside: inherits it
        assert os.sched_getaffinity(0) == os.sched_getaffinity(before.native_id) == ALLOWED
    finally:
        release.set()
        before.join()


@two_cpus
def test_a_display_keeps_off_the_ai_cpu_only_on_the_publishers_host():
    assert display_cpus("ipc:///tmp/orsight/live.sock") == ALLOWED - {max(ALLOWED)}
    assert display_cpus("tcp://127.0.0.1:5555") == ALLOWED - {max(ALLOWED)}
    assert display_cpus("tcp://10.1.2.3:5555") is None

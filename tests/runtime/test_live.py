"""The live path over real sockets: protocol, slow model, lost camera."""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.graph import build_graph
from pipeline.runtime.live import AI_NICENESS, AI_PRIORITY, LiveOptions, lower_priority, run_live
from pipeline.sources.capture import PhantomSource, SourceError, SourceLost, open_source
from pipeline.stages.infer import load_model
from pipeline.transport.untrusted import SHARED_DIR, decode_image
from pipeline.transport.zeromq import Publisher, Receiver
from tests.helpers import can_split_cpus, free_port


@pytest.mark.parametrize("video_encoding", ["raw-bgr8", "shm-bgr8", "jpeg"])
def test_every_header_follows_the_protocol(untrained_models, free_tcp_endpoint, tmp_path, video_encoding):
    model = load_model(untrained_models["onnx"])
    report = tmp_path / "report.json"
    endpoint = free_tcp_endpoint
    subscriber = subprocess.Popen([sys.executable, str(Path(__file__).parents[1] / "protocol_subscriber.py"),
                                   endpoint, "60", str(report)])
    publisher = Publisher(endpoint)
    try:
        assert publisher.wait_for_subscriber(timeout=30)
        time.sleep(0.2)  # all five subscriptions in
        summary = run_live(open_source("phantom:approach", size=(640, 360)), build_graph(model, PipelineConfig()),
                           publisher, LiveOptions(frames=40, video_encoding=video_encoding))
        subscriber.wait(timeout=60)
    finally:
        publisher.close()
        subscriber.kill()
    result = json.loads(report.read_text())
    assert result["errors"] == []
    assert result["final"] and result["gaps"] == 0
    assert result["counts"]["video"] == 40 and result["counts"]["mask"] == summary["frames_analysed"] == 40
    assert result["counts"]["overlay"] == 40 and result["counts"]["status"] >= 1


def _run_and_listen(endpoint, source, stages, options, topics=("video", "overlay", "mask", "alert", "status")):
    """Run the live path on ``endpoint`` with a subscriber that logs every message of ``topics``.

    Returns the run summary, the receiver (counts, delays) and the headers received, in order.
    """
    publisher = Publisher(endpoint)
    receiver = Receiver(endpoint, topics=topics).start()
    headers, stop = [], threading.Event()

    def listen():  # the receiver keeps the newest message per topic; pick up each new one
        newest = {}
        while not stop.is_set():
            for topic in topics:
                message = receiver.newest(topic)
                if message is not None and message is not newest.get(topic):
                    newest[topic] = message
                    headers.append(message.header)
            time.sleep(0.002)

    listener = threading.Thread(target=listen, daemon=True)
    try:
        assert publisher.wait_for_subscriber(timeout=10)
        time.sleep(0.2)
        listener.start()
        started = time.monotonic()
        summary = run_live(source, stages, publisher, options)
        summary["wall_s"] = time.monotonic() - started
        time.sleep(0.3)
    finally:
        stop.set()
        receiver.stop()
        publisher.close()
    return summary, receiver, headers


class SlowModel:
    """The real model behind a 200 ms sleep: the AI runs at under 5 fps."""

    def __init__(self, model):
        self.model, self.reads, self.writes = model, model.reads, model.writes

    def __call__(self, packet):
        time.sleep(0.2)
        return self.model(packet)


def _stages_with(model_wrapper, untrained_models):
    model = load_model(untrained_models["onnx"])
    graph = build_graph(model, PipelineConfig())
    graph.model = model_wrapper(model)
    return graph


def test_slow_model_never_holds_up_the_video(untrained_models, free_tcp_endpoint):
    summary, receiver, _ = _run_and_listen(free_tcp_endpoint, open_source("phantom", size=(1280, 720), fps=30),
                                           _stages_with(SlowModel, untrained_models),
                                           LiveOptions(frames=60, realtime=True))
    assert receiver.counts["video"] == 60  # every frame passed through
    assert summary["wall_s"] < 3.0  # at the source's 30 fps, not the model's 5 fps
    assert summary["frames_analysed"] <= 15 and summary["drops"] >= 40
    assert np.median(receiver.delays_ms["video"]) < 20  # passthrough does not wait ~200 ms for the AI


@pytest.mark.parametrize("topics", [("video", "mask", "status"), ("video", "overlay", "mask", "status")])
def test_the_overlay_is_drawn_only_while_someone_subscribes_to_it(untrained_models, free_tcp_endpoint, topics):
    model = load_model(untrained_models["onnx"])
    summary, receiver, _ = _run_and_listen(free_tcp_endpoint, open_source("phantom:approach", size=(640, 360)),
                                           build_graph(model, PipelineConfig()), LiveOptions(frames=20), topics)
    wanted = "overlay" in topics
    assert receiver.counts["mask"] == summary["frames_analysed"] == 20  # the display draws the mask itself
    assert ("overlay" in summary["stage_ms_p50"]) == wanted
    assert summary["stage_ms_p99"].keys() == summary["stage_ms_p50"].keys()  # the tail of each stage, beside its median
    assert all(summary["stage_ms_p99"][stage] >= summary["stage_ms_p50"][stage] for stage in summary["stage_ms_p50"])
    if wanted:
        assert receiver.counts["overlay"] == 20


class TwoRegionOutputs:
    """The model, with its output replaced by a class map with one instrument and one vessel region, every frame."""

    def __init__(self, model):
        self.model, self.reads, self.writes, self.cpu_threads = model, model.reads, model.writes, model.cpu_threads

    def __call__(self, packet):
        packet = self.model(packet)
        output = np.zeros((1, 320, 320), np.uint8)
        output[0, 120:160, 50:100], output[0, 120:160, 200:250] = 1, 2  # inside the 640x360 picture's band
        packet.outputs = [output]
        return packet


class InstanceWatch:
    """The decoder, watched: how many instances each frame had, and whether its class map held both classes."""

    def __init__(self, decode, watched=None):
        self.decode, self.reads, self.writes = decode, decode.reads, decode.writes
        self.instances, self.both_classes = (watched.instances, watched.both_classes) if watched else ([], [])

    def class_map_only(self):
        return InstanceWatch(self.decode.class_map_only(), self)

    def __call__(self, packet):
        packet = self.decode(packet)
        self.instances.append(len(packet.segmentation.class_ids))
        self.both_classes.append({1, 2} <= set(np.unique(packet.segmentation.class_map)))
        return packet


@pytest.mark.parametrize("topics", [("video", "mask", "status"), ("video", "overlay", "mask", "status")])
def test_a_class_map_model_finds_instances_only_for_an_overlay(untrained_semantic_models, free_tcp_endpoint,
                                                                topics):
    """The display draws the class map; the connected regions (instances) are found only for the overlay."""
    graph = build_graph(load_model(untrained_semantic_models["onnx"]), PipelineConfig())
    graph.model, graph.decode = TwoRegionOutputs(graph.model), InstanceWatch(graph.decode)
    watch = graph.decode
    summary, _, _ = _run_and_listen(free_tcp_endpoint, open_source("phantom:approach", size=(640, 360)), graph,
                                    LiveOptions(frames=10), topics)
    assert summary["frames_analysed"] == 10 and all(watch.both_classes)
    assert watch.instances == [2 if "overlay" in topics else 0] * 10


class StallingModel(SlowModel):
    """The real model, which hangs for 0.6 s once, at the first frame it gets from frame 15 on (the live
    path may drop frame 15 itself; then 3 s to raise, hold and clear ai_stale)."""

    stalled = False

    def __call__(self, packet):
        if packet.frame_id >= 15 and not self.stalled:
            self.stalled = True
            time.sleep(0.6)
        return self.model(packet)


def test_stalled_model_raises_ai_stale_and_clears_it(untrained_models, free_tcp_endpoint):
    summary, _, headers = _run_and_listen(free_tcp_endpoint, open_source("phantom", size=(640, 360), fps=30),
                                          _stages_with(StallingModel, untrained_models),
                                          LiveOptions(frames=120, realtime=True), topics=("alert",))
    stale = [(h["state"], h["priority"]) for h in headers if h["rule"] == "ai_stale"]
    assert stale[0] == ("raised", "medium") and stale[-1][0] == "cleared"
    assert summary["alerts_raised"] >= 1 and summary["drops"] > 5


class FlakyCamera(PhantomSource):
    """A live camera that vanishes at frame 5 and comes back on the third reconnection."""

    live = True

    def __init__(self):
        super().__init__("default", (320, 240), 100.0)
        self.reopens = 0

    def read(self):
        if self.frame == 5 and self.reopens < 3:
            raise SourceLost("camera unplugged")
        return super().read()

    def reopen(self):
        self.reopens += 1
        if self.reopens < 3:
            raise SourceError("camera still gone")


def test_lost_camera_is_reported_and_retried(untrained_models, free_tcp_endpoint):
    source = FlakyCamera()
    stages = build_graph(load_model(untrained_models["onnx"]), PipelineConfig())
    summary, _, headers = _run_and_listen(free_tcp_endpoint, source, stages,
                                          LiveOptions(frames=20, reconnect_max_s=0.5), topics=("status", "alert"))
    lost = [h for h in headers if h["topic"] == "status" and h["state"] == "capture_lost"]
    assert lost and "camera" in lost[0]["error"] and lost[0]["retry_in_s"] > 0
    assert ("capture_lost", "raised") in [(h["rule"], h["state"]) for h in headers if h["topic"] == "alert"]
    assert source.reopens == 3 and summary["frames_captured"] == 20 and summary["state"] == "ended"


class RingWatchingSource(PhantomSource):
    """The phantom, noting whether the publisher's video ring was there before the first frame was read."""

    def __init__(self, publisher: Publisher):
        super().__init__("approach", (320, 240), 30.0)
        self.publisher, self.ring_before_first_read = publisher, None

    def read(self):
        if self.ring_before_first_read is None:
            self.ring_before_first_read = ("video", (240, 320, 3)) in self.publisher.rings
        return super().read()


@pytest.mark.skipif(not SHARED_DIR.is_dir(), reason="no /dev/shm")
def test_the_shared_video_ring_is_made_before_the_first_frame(untrained_models, free_tcp_endpoint):
    publisher = Publisher(free_tcp_endpoint)
    try:
        source = RingWatchingSource(publisher)
        run_live(source, build_graph(load_model(untrained_models["onnx"]), PipelineConfig()), publisher,
                 LiveOptions(frames=3, video_encoding="shm-bgr8"))
    finally:
        publisher.close()
    assert source.ring_before_first_read  # the first frame does not wait ~25 ms for it to be made


class PatternedClassMaps:
    """Last stage: a random class map for every frame (kept by frame id), so what arrives can be compared."""

    reads, writes = ("segmentation",), ()

    def __init__(self):
        self.sent, self.random = {}, np.random.default_rng(0)

    def __call__(self, packet):
        packet.segmentation.class_map = self.random.integers(0, 4, packet.segmentation.class_map.shape, np.uint8)
        self.sent[packet.frame_id] = packet.segmentation.class_map
        return packet


@pytest.mark.parametrize("bind, encoding", [("127.0.0.1", "shm-bgr8" if SHARED_DIR.is_dir() else "zlib"),
                                            ("*", "zlib")])
def test_the_mask_goes_by_shared_memory_on_this_host_and_compressed_to_others(untrained_models, bind, encoding):
    port = free_port()
    publisher = Publisher(f"tcp://{bind}:{port}", insecure=True)
    receiver = Receiver(f"tcp://127.0.0.1:{port}", topics=("mask",)).start()
    patterns = PatternedClassMaps()
    try:
        assert publisher.wait_for_subscriber(timeout=10)
        time.sleep(0.2)
        graph = build_graph(load_model(untrained_models["onnx"]), PipelineConfig())
        graph.finish.append(patterns)
        run_live(open_source("phantom:approach", size=(320, 240)), graph, publisher, LiveOptions(frames=8))
        deadline = time.monotonic() + 5
        while (message := receiver.newest("mask")) is None or message.header["frame_id"] != max(patterns.sent):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert message.header["encoding"] == encoding and message.header["shape"] == [240, 320]
        np.testing.assert_array_equal(decode_image(message), patterns.sent[message.header["frame_id"]])
    finally:
        receiver.stop()
        publisher.close()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux thread scheduling")
@pytest.mark.parametrize("policy", ["nice", "idle"])
def test_the_ai_thread_yields_to_the_video_path(policy):
    """The default gives the AI thread a smaller share than the thread that starts it, never the whole process;
    its niceness is relative to that thread's, so `nice -n N orsight run` moves the AI along with the video path."""
    seen = {}
    started = os.getpriority(os.PRIO_PROCESS, 0) + 3  # as if started with `nice -n 3` (no privilege needed)

    def ai_thread():
        lower_priority(policy, AI_NICENESS)
        thread = threading.get_native_id()
        seen.update(niceness=os.getpriority(os.PRIO_PROCESS, thread), scheduler=os.sched_getscheduler(thread))

    def video_path():  # Linux: a thread's niceness is its own, and a new thread inherits its creator's
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), started)
        worker = threading.Thread(target=ai_thread)
        worker.start()
        worker.join()
        seen.update(video_path=os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=video_path)
    thread.start()
    thread.join()
    assert seen["video_path"] == started  # the video path keeps its priority
    if policy == "nice":
        assert AI_PRIORITY == "nice" and seen["niceness"] == started + AI_NICENESS > started
    else:
        assert seen["scheduler"] == os.SCHED_IDLE


class NicenessWatch:
    """Last stage: the niceness of the thread that runs the stages (the AI thread), frame by frame."""

    reads, writes = (), ()

    def __init__(self):
        self.seen = []

    def __call__(self, packet):
        self.seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return packet


@pytest.mark.skipif(not can_split_cpus(), reason="needs two CPUs and leave to move threads between them (Linux)")
@pytest.mark.parametrize("threads, reserve", [(1, True), (1, False), (2, True)])
def test_a_one_thread_model_gets_a_cpu_of_its_own_while_it_runs(untrained_models, free_tcp_endpoint, threads,
                                                                reserve):
    allowed, niceness = os.sched_getaffinity(0), os.getpriority(os.PRIO_PROCESS, 0)
    watch = NicenessWatch()
    publisher = Publisher(free_tcp_endpoint)
    try:
        graph = build_graph(load_model(untrained_models["onnx"], threads=threads), PipelineConfig())
        graph.finish.append(watch)
        summary = run_live(open_source("phantom", size=(640, 360)), graph, publisher,
                           LiveOptions(frames=5, reserve_core=reserve))
    finally:
        publisher.close()
    assert summary["frames_analysed"] >= 1
    # the AI thread alone on the last CPU (the capture and this thread on the others meanwhile); a model
    # with a pool of its own, or reserve_core off, leaves every thread where it was
    own_cpu = threads == 1 and reserve
    assert summary["ai_cpus"] == ([max(allowed)] if own_cpu else None)
    assert os.sched_getaffinity(0) == allowed  # given back
    # yielding to the video path only where it shares CPUs with it; a fair share against other software on its own
    assert set(watch.seen) == {niceness if own_cpu else niceness + AI_NICENESS}

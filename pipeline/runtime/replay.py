"""Replay analysis of recorded videos: every frame, in order, as fast as the hardware allows.

Two phases over the live path's own stages (:func:`~pipeline.runtime.graph.build_graph`, CPU or
CUDA, undistortion included) with a different scheduler:

1. *analyse* (parallel by chunk): read -> [undistort] -> preprocess -> infer (batched) -> decode
   -> analyse -> one deterministic record per frame (instances with polygons, minimum distance).
2. *finalise* (in frame order): the graph's finishing stages (alerts -> overlay -> [redistort])
   on results rebuilt from the records -> annotated MP4, ``frames.jsonl``, ``alerts.jsonl``,
   ``report.html``, ``summary.json``. With a calibration, records are in undistorted pixels.

In one process the phases overlap (decode thread, model on the main thread, a thread for the
masks, analysis and records, a finalise thread);
with ``chunk_frames`` or Ray, chunks (cut at keyframes) are analysed apart, and the finalise
pass decodes the video once more. The records, and so every output, are identical either way.

    summary = replay_video("case12.mp4", "out/", model_path=None, options=ReplayOptions())
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from calibration.camera import CameraModel
from pipeline.core.evidence import UNVALIDATED
from pipeline.core.packet import FramePacket
from pipeline.core.privacy import out_of_body, pseudonym
from pipeline.core.signals import block_stop_signals
from pipeline.core.trust import sha256
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.finaliser import Finaliser
from pipeline.runtime.graph import build_graph
from pipeline.runtime.records import frame_record
from pipeline.runtime.video import (
    ReplayError,
    VideoInfo,
    decode_errors,
    expand_inputs,
    first_file,
    images_of,
    plan_chunks,
    probe,
    read_frames,
)
from pipeline.stages.alerts.rules import CLINICAL_RULES
from pipeline.stages.infer import default_model, load_model
from pipeline.stages.privacy import OutOfBodyModel


@dataclass
class ReplayOptions:
    batch: int = 1  # frames per forward pass (CPU: 1; more needs a model with a dynamic batch)
    chunk_frames: int | None = None  # analyse in chunks of about this many frames (cut at keyframes)
    device: str = "cpu"
    threads: int | None = None  # ONNX Runtime intra-op threads
    progress: bool = True
    config: PipelineConfig = field(default_factory=PipelineConfig)
    camera: CameraModel | None = None  # a calibration: frames are undistorted for analysis
    privacy_model: str | Path | None = None  # the out-of-body model judging every frame (None: all taken as inside)
    pseudonym_key: bytes | None = None  # name videos by a keyed hash in what may leave the hospital


# ---- phase 1: analyse -------------------------------------------------------------------
EVIDENCE_WARMUP = 32  # frames: the temporal filter forgets 0.6 a frame, so 0.6**32 (1e-7) of what came before
class ReplayWorker:
    """Phase 1 for one model: frames -> records (and the analysed packets, for the overlap).

    Runs the live graph up to the analysis: the stages before the model per frame, the model
    over batches, then decode and analyse; the finishing stages are the finaliser's.
    """

    def __init__(self, model_path, options: ReplayOptions, fov: tuple[float, float, float] | None = None):
        config = options.config
        cv2.setNumThreads(1)  # OpenCV's work runs beside the model in its own threads: no pool competing with it
        self.model = load_model(model_path, device=options.device, threads=options.threads, conf=config.conf,
                                iou=config.iou, roles=config.roles)
        if options.batch > 1 and self.model.max_batch is not None and self.model.max_batch < options.batch:
            raise ReplayError(f"--batch {options.batch}: this model takes batches of {self.model.max_batch}; "
                              "export it with a dynamic batch")
        self.batch = options.batch
        self.graph = build_graph(self.model, dataclasses.replace(config, privacy_every=1), options.camera,
                                 device=options.device, fov=fov, finish=False,  # the Finaliser's, from the records
                                 privacy=OutOfBodyModel(options.privacy_model) if options.privacy_model else None)

    def prepare(self, index: int, image: np.ndarray, info: VideoInfo) -> FramePacket:
        """The stages before the model for one frame (its own tensor: packets wait in queues), at its media time."""
        packet = FramePacket(index, info.path, image, info.time_ns(index), time.monotonic_ns())
        for stage in ([self.graph.privacy] if self.graph.privacy else []) + self.graph.prepare:
            packet = stage(packet)
        if packet.device is not None:
            packet.device.tensor = packet.device.tensor.copy()
        else:
            packet.tensor = packet.tensor.copy()
        return packet

    def batches(self, packets):
        """Forward passes over batches of prepared packets; yields the packets in order."""
        pending = []
        for packet in packets:
            pending.append(packet)
            if len(pending) == self.batch:
                yield from self.model.forward_batch(pending)
                pending = []
        if pending:
            yield from self.model.forward_batch(pending)

    def describe(self, packet: FramePacket) -> dict:
        """Decode, analysis and the frame's record, from the model's outputs (none out of body)."""
        if not self.graph.analysed(packet):
            return frame_record(self.graph.hold(packet))
        for stage in self.graph.describe:
            packet = stage(packet)
        return frame_record(packet)

    def run(self, frames, info: VideoInfo):
        """Yield ``(packet, record)`` in frame order for ``(index, image)`` frames of ``info``'s video."""
        for packet in self.batches(self.prepare(index, image, info) for index, image in frames):
            yield packet, self.describe(packet)


def analyse_chunk(info: VideoInfo, start: int, stop: int, model_path, options: ReplayOptions) -> list[dict]:
    """Phase 1 for one chunk: the records of frames ``start``..``stop - 1`` (fewer if truncated). The vessel
    evidence's memory is rebuilt first from the ``EVIDENCE_WARMUP`` frames before the chunk, so chunks give
    the records one pass over the whole video gives."""
    analyser = ReplayWorker(model_path, options, info.fov)
    first = max(0, start - EVIDENCE_WARMUP)
    return [record for _, record in analyser.run(read_frames(info.path, first, stop), info)
            if record["frame"] >= start]


# ---- one video, start to end ------------------------------------------------------------
def _overlapped(path: str, info: VideoInfo, analyser: ReplayWorker, finaliser: Finaliser, bar) -> tuple[int, list]:
    """Single process, four threads in a row, each handing on through a queue: decode + preprocess |
    model (this thread) | masks, analysis and the record | alerts, overlay, encode, outputs. The model's
    thread does nothing but the model; the work after it is split in two so it keeps up with it."""
    prepared, inferred, described = (queue.Queue(maxsize=16) for _ in range(3))
    done_at: list[float] = []
    failure: list[BaseException] = []

    def decode():
        for index, image in read_frames(path):
            prepared.put(analyser.prepare(index, image, info))

    def describe(packet: FramePacket):
        picture = packet.original if packet.original is not None else packet.image  # as recorded, not straightened
        return picture, analyser.describe(packet)

    def finalise(described_frame):
        finaliser.add(*described_frame)
        done_at.append(time.perf_counter())
        bar.update(1)

    threads = [threading.Thread(target=_worker, args=args, daemon=True)
               for args in ((decode, None, prepared, failure), (describe, inferred, described, failure),
                            (finalise, described, None, failure))]
    for thread in threads:
        thread.start()
    count = 0
    try:
        for packet in analyser.batches(iter(prepared.get, None)):
            inferred.put(packet)
            count += 1
    finally:
        inferred.put(None)
        while threads[0].is_alive():  # a failed model must not leave the decoder blocked on a full queue
            try:
                prepared.get(timeout=0.1)
            except queue.Empty:
                pass
        for thread in threads:
            thread.join()
    if failure:
        raise failure[0]
    return count, done_at


def _worker(work, inbox: queue.Queue | None, outbox: queue.Queue | None, failure: list) -> None:
    """A replay thread: ``work`` on each item of ``inbox`` until ``None``, its results to ``outbox``;
    without an inbox, ``work()`` is the producer that fills ``outbox`` itself. Either way ``outbox``
    gets its ``None`` at the end; a failure is kept for the main thread and the inbox drained, so
    no thread before this one stays blocked on a full queue."""
    block_stop_signals()
    try:
        if inbox is None:
            work()
        else:
            while (item := inbox.get()) is not None:
                result = work(item)
                if outbox is not None:
                    outbox.put(result)
    except BaseException as error:  # reported by the main thread
        failure.append(error)
        while inbox is not None and inbox.get() is not None:
            pass
    finally:
        if outbox is not None:
            outbox.put(None)


def _finalise_from_records(path: str, records: list[dict], finaliser: Finaliser, bar) -> list[float]:
    """Chunked runs: decode the video once more, in order, pairing each frame with its record."""
    done_at = []
    for (_, image), record in zip(read_frames(path), records):
        finaliser.add(image, record)
        done_at.append(time.perf_counter())
        bar.update(1)
    return done_at


def output_names(videos: list[str]) -> dict[str, str]:
    """Each video's output folder name: its file stem, or ``parent-stem`` where two stems are alike."""
    stems = [Path(video).stem for video in videos]
    return {video: stem if stems.count(stem) == 1 else f"{Path(video).resolve().parent.name}-{stem}"
            for video, stem in zip(videos, stems)}


def _finished(final: Path, path: str, key: bytes | None = None) -> dict | None:
    """The earlier complete result for this very file (same size and time), else None: redone."""
    summary_path = final / "summary.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    unchanged = summary.get("video_stat") == _video_stat(path, key)
    return summary if unchanged and not summary["partial"] else None


def _video_stat(path: str, key: bytes | None = None) -> dict[str, int] | str:
    """What tells a changed recording: size and time (of every image, for a folder of images); with a
    pseudonym ``key``, a keyed hash of them (file times tell when a patient was operated on)."""
    files = images_of(Path(path)) if Path(path).is_dir() else [Path(path)]
    stats = [f.stat() for f in files]
    stat = {"bytes": sum(s.st_size for s in stats), "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}
    return stat if key is None else hmac.new(key, json.dumps(stat).encode(), hashlib.sha256).hexdigest()[:16]


def replay_video(path: str | Path, out: str | Path, model_path=None, options: ReplayOptions | None = None,
                 records: list[dict] | None = None, name: str | None = None) -> dict:
    """Analyse one video into ``out/<name>/`` (``name``: the file's stem by default); ``records``
    from chunked analysis skip phase 1.

    Outputs are written in ``out/<name>.partial/`` and renamed when complete; a complete
    earlier result of the same file is kept (resume); a partial one, one of a file changed since
    (a repaired video), or a leftover ``.partial`` folder is redone.
    """
    from tqdm import tqdm

    options = options or ReplayOptions()
    info = probe(str(path))
    path = info.path  # a live recording's folder: its video
    final = Path(out) / (name or Path(path).stem)
    if (earlier := _finished(final, path, options.pseudonym_key)) is not None:
        return {**earlier, "resumed": True}
    work = final.with_name(final.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    analyser = ReplayWorker(model_path, options, info.fov) if records is None else None
    names, roles, vessel_alerts = _model_facts(analyser, model_path, options)
    finaliser = Finaliser(work, info, names, roles, options.config, options.camera, overlapped=records is None)
    started = time.perf_counter()
    with tqdm(total=info.frame_count or None, unit="frame", desc=Path(path).name, disable=not options.progress,
              leave=False) as bar:
        try:
            if records is None:
                count, done_at = _overlapped(path, info, analyser, finaliser, bar)
            else:
                done_at = _finalise_from_records(path, records, finaliser, bar)
                count = len(done_at)
        finally:
            finaliser.close()
    seconds = time.perf_counter() - started
    damaged = decode_errors(info.path)  # one more pass over the file: what the decoder concealed
    summary = _summary(info, count, seconds, finaliser, model_path, options, vessel_alerts, damaged)
    from pipeline.runtime.report import write_report  # matplotlib: loaded only when a report is written

    write_report(work / "report.html", summary, finaliser.series, finaliser.timeline, done_at, started,
                 options.config, finaliser.thumbnails)
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    return summary


def _model_facts(analyser: ReplayWorker | None, model_path, options: ReplayOptions):
    """The model's class names and roles, and what its vessel alerts mean (its validated operating points)."""
    model = analyser.model if analyser is not None else load_model(model_path, device="cpu", roles=options.config.roles)
    points = model.operating_points
    return model.names, model.roles, points.summary() if points else UNVALIDATED


def _summary(info: VideoInfo, count: int, seconds: float, finaliser: Finaliser, model_path, options,
             vessel_alerts: str, damaged: int) -> dict:
    partial = info.frame_count > 0 and count < info.frame_count
    error = f"truncated: read {count} of {info.frame_count} frames" if partial else None
    if damaged:  # results from frames the decoder had to patch up are not the recording's own
        error = "; ".join(filter(None, (error, f"{damaged} frames could not be decoded cleanly (a damaged file)")))
    distances = [d for d in finaliser.series["distance_px"] if d is not None]
    raised = [a for a in finaliser.timeline if a["state"] == "raised"]
    shipped = default_model(options.device)
    key = options.pseudonym_key
    return {
        "video": info.path if key is None else pseudonym(first_file(info.path), key),
        "video_stat": _video_stat(info.path, key), "fps": info.fps, "size": list(info.size),
        "frames_claimed": info.frame_count,
        "frames_analysed": count, "partial": partial or bool(damaged), "decode_errors": damaged, "error": error,
        "duration_s": round(count / info.fps, 3), "seconds": round(seconds, 3),
        "throughput_fps": round(count / max(seconds, 1e-9), 2),
        "frames_with_instrument": int(sum(a > 0 for a in finaliser.series["instrument"])),
        "frames_with_vessel": int(sum(a > 0 for a in finaliser.series["vessel"])),
        "min_distance_px": min(distances) if distances else None,
        "frames_with_possible_vessel": finaliser.advisory_frames,
        "out_of_body": {**out_of_body(finaliser.privacy_frames, info.fps), "mode": options.config.privacy},
        "alerts_raised": {rule: sum(a["rule"] == rule for a in raised) for rule in CLINICAL_RULES},
        "alerts_at_high_priority": len({a["alert_id"] for a in finaliser.timeline if a["priority"] == "high"}),
        "vessel_alerts": vessel_alerts,
        "model": Path(model_path).name if model_path else f"{shipped.name} (shipped)",
        "model_sha256": sha256(model_path or shipped), "batch": options.batch,
        "mode": "single process" if finaliser.overlapped else "chunks (seconds and throughput: the final pass only)",
    }


# ---- many videos: chunks, optionally on a Ray cluster ---------------------------------
RAY_CHUNK_FRAMES = 300


def replay_videos(videos: list[str], out: str | Path, model_path=None, options: ReplayOptions | None = None,
                  use_ray: bool = False, ray_address: str | None = None) -> tuple[list[dict], dict[str, str]]:
    """Analyse every video; returns the summaries and ``{video: error}`` for those that failed.

    With ``use_ray`` the chunks of all videos are analysed as Ray tasks (locally started Ray
    without an address; GPU tasks ask for a GPU each), then each video is finalised here.
    """
    options = options or ReplayOptions()
    summaries, errors, pending = [], {}, []
    videos = expand_inputs(videos)
    names = output_names(videos)
    if use_ray:
        import ray

        local = {} if ray_address else {"_node_ip_address": "127.0.0.1"}  # a Ray started here listens on loopback
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True, **local)
        task = ray.remote(num_cpus=1, num_gpus=1 if options.device == "cuda" else 0)(analyse_chunk)
    for video in videos:
        try:
            info = probe(video)
        except ReplayError as error:
            errors[video] = str(error)
            continue
        chunk_frames = options.chunk_frames or (RAY_CHUNK_FRAMES if use_ray else None)
        if not chunk_frames or _finished(Path(out) / names[video], info.path, options.pseudonym_key) is not None:
            pending.append((video, None))
            continue
        chunks = plan_chunks(info.path, max(info.frame_count, 1), chunk_frames)
        quiet = ReplayOptions(**{**options.__dict__, "progress": False})
        if use_ray:
            pending.append((video, [task.remote(info, a, b, model_path, quiet) for a, b in chunks]))
        else:
            pending.append((video, [analyse_chunk(info, a, b, model_path, quiet) for a, b in chunks]))
    for video, parts in pending:
        if parts is not None and use_ray:
            parts = ray.get(parts)
        records = None if parts is None else [record for part in parts for record in part]
        try:
            summary = replay_video(video, out, model_path, options, records=records, name=names[video])
        except OSError as error:  # a full disk: the video's folder stays .partial, the others go on
            errors[video] = f"cannot write its results in {out}: {error.strerror or error}"
            continue
        summaries.append(summary)
        if summary["partial"]:
            errors[video] = summary["error"]
    return summaries, errors

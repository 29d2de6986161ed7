"""``orsight anonymize``: de-identified copies of recorded videos, for archives and for sharing.

Each video is read with replay's reader, every frame judged by the privacy stage, and written
as a new H.264 MP4 named by the video's pseudonym (never its path): outside segments blurred
(or blanked, or left out with ``cut``), nothing of the source container kept (no dates,
device names, titles, no audio). Beside it, ``PSEUDONYM.json``: the segments (inside, outside,
blank: frames and times) and the counts. The JSON is written last, under its final name only
when the video is complete: a video with its JSON is done and is skipped when run again (in
the same mode).

    result = anonymize_video("case.mp4", "shared/", key, mode="blur", cut=False)
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.packet import FramePacket
from pipeline.core.privacy import OUTSIDE, pseudonym, shared_picture
from pipeline.display.recorder import Recorder
from pipeline.runtime.video import first_file, probe, read_frames
from pipeline.stages.privacy import OutOfBodyModel, PrivacyGate


def anonymize_video(path: str | Path, out: str | Path, key: bytes, mode: str = "blur", cut: bool = False,
                    model: OutOfBodyModel | None = None) -> dict:
    """Write ``out/PSEUDONYM.mp4`` and ``out/PSEUDONYM.json``; returns the JSON's content (``resumed``: done
    before)."""
    path, out = Path(path), Path(out)
    name = pseudonym(first_file(path), key)
    done = out / f"{name}.json"
    if done.is_file() and (earlier := json.loads(done.read_text()))["mode"] == ("cut" if cut else mode):
        return {**earlier, "resumed": True}
    info = probe(str(path))
    gate = PrivacyGate(model or OutOfBodyModel(), every=1)
    recorder = Recorder(out / f"{name}.mp4", info.fps, live=False)
    segments: list[dict] = []
    written = 0
    try:
        for index, image in read_frames(str(path)):
            state = gate(FramePacket(index, name, image, 0, 0)).privacy
            if segments and segments[-1]["state"] == state:
                segments[-1]["last_frame"] = index
            else:
                segments.append({"state": state, "first_frame": index, "last_frame": index})
            if cut and state == OUTSIDE:
                continue
            recorder.write(shared_picture(image, state, mode), round(written / info.fps * 1e9))
            written += 1
    finally:
        recorder.close()
    for segment in segments:
        segment["start_s"] = round(segment["first_frame"] / info.fps, 3)
        segment["end_s"] = round((segment["last_frame"] + 1) / info.fps, 3)
    frames = {state: sum(s["last_frame"] - s["first_frame"] + 1 for s in segments if s["state"] == state)
              for state in ("inside", "outside", "blank")}
    result = {"video": name, "fps": info.fps, "frames": sum(frames.values()), "frames_written": written,
              "frames_by_state": frames, "mode": "cut" if cut else mode, "segments": segments}
    partial = done.with_name(done.name + ".partial")
    partial.write_text(json.dumps(result, indent=2))
    partial.replace(done)
    return result

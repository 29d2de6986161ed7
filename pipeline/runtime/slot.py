"""The hand-off from the capture thread to the AI thread: one frame, the newest or each in turn.

    slot = LatestSlot(newest_wins=True)      # a live source: an untaken frame is replaced (a drop)
    slot.put(packet); packet = slot.get(); slot.close()
"""
from __future__ import annotations

import threading

from pipeline.core.packet import FramePacket


class LatestSlot:
    """Hand-off from capture to AI. ``newest_wins``: a put replaces an untaken frame (a drop);
    otherwise a put waits until the previous frame was taken (every frame analysed)."""

    def __init__(self, newest_wins: bool):
        self.newest_wins = newest_wins
        self.item: FramePacket | None = None
        self.closed = False
        self.drops = 0
        self.condition = threading.Condition()

    def put(self, packet: FramePacket) -> None:
        with self.condition:
            if self.newest_wins:
                self.drops += self.item is not None
            else:
                self.condition.wait_for(lambda: self.item is None or self.closed)
            self.item = packet
            self.condition.notify_all()

    def get(self) -> FramePacket | None:
        """The next frame, or ``None`` once the slot is closed and empty."""
        with self.condition:
            self.condition.wait_for(lambda: self.item is not None or self.closed)
            packet, self.item = self.item, None
            self.condition.notify_all()
            return packet

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify_all()

"""Stop signals go to the main thread only: worker threads block them.

Ctrl-C, SIGTERM and SIGHUP stop every command cleanly from its main thread; a signal delivered
to a worker thread in the middle of native code (ONNX Runtime, OpenCV) can abort the process.

    threading.Thread(target=lambda: (block_stop_signals(), work())).start()
"""
from __future__ import annotations

import signal

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def block_stop_signals() -> None:
    """Call first thing in a worker thread."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

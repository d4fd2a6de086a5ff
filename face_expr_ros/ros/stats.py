"""Counters and latency percentiles behind the node's /diagnostics (no ROS)."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------
# Statistics for /diagnostics
# ---------------------------------------------------------------------------------------------
def stamp_latency_ms(stamp_ns: int, now_ns: int) -> float | None:
    """Milliseconds from an image's header stamp to ``now_ns`` (both ROS time, nanoseconds);
    None for a zero stamp (drivers that do not stamp): there is no latency to measure."""
    return (now_ns - stamp_ns) / 1e6 if stamp_ns > 0 else None


class NodeStats:
    """Counters and latency samples, shared by the callbacks, the worker and the timer."""

    WINDOW_S = 5.0  # latency percentiles over the last seconds

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = self.processed = self.dropped = 0
        self.bad_messages = self.processing_errors = self.incompatible_qos = 0
        self.faces = 0
        self.reduced = 0  # JPEG frames decoded at a reduced size (parameter reduced_decode)
        self.last_error = ""
        self._period_start = time.monotonic()
        self._period_received = self._period_processed = 0
        # (t, receive ms, stamp ms or None)
        self._latency: deque[tuple[float, float, float | None]] = deque()

    def count_reduced(self, factor: int) -> None:
        """One decoded frame, at 1/``factor`` of its size."""
        if factor > 1:
            with self.lock:
                self.reduced += 1

    def add_latency(self, receive_ms: float, stamp_ms: float | None) -> None:
        """One processed frame; ``stamp_ms`` None: the image had no stamp (left out of the
        stamp percentiles)."""
        now = time.monotonic()
        with self.lock:
            self._latency.append((now, receive_ms, stamp_ms))
            while self._latency and self._latency[0][0] < now - self.WINDOW_S:
                self._latency.popleft()

    def snapshot(self) -> dict[str, Any]:
        """Totals, rates since the last snapshot, latency percentiles; starts a new period."""
        now = time.monotonic()
        with self.lock:
            elapsed = max(now - self._period_start, 1e-6)
            fps_in = (self.received - self._period_received) / elapsed
            fps_out = (self.processed - self._period_processed) / elapsed
            self._period_start, self._period_received = now, self.received
            self._period_processed = self.processed
            recent = [s for s in self._latency if s[0] >= now - self.WINDOW_S]
            out = dict(received=self.received, processed=self.processed, dropped=self.dropped,
                       bad_messages=self.bad_messages, processing_errors=self.processing_errors,
                       incompatible_qos=self.incompatible_qos, faces=self.faces,
                       reduced=self.reduced,
                       last_error=self.last_error, fps_in=fps_in, fps_out=fps_out)
        for key, column in (("receive", 1), ("stamp", 2)):
            values = np.array([s[column] for s in recent if s[column] is not None])
            out[f"latency_{key}_p50_ms"] = float(np.percentile(values, 50)) if len(values) else None
            out[f"latency_{key}_p95_ms"] = float(np.percentile(values, 95)) if len(values) else None
        return out



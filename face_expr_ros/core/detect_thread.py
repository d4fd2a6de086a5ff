"""The tracking mode's scheduled detection in a thread of its own, at a lower priority.

In the tracking mode (core.follow) the detector runs only to find new faces, every
``detection_interval_s``; a detection costs more than a frame period on 2 CPUs (about 40 ms at
640x480), so run in the frame's own thread it holds back the next frames (they wait or are
dropped). :class:`DetectionThread` runs it beside the frames instead: libfacedetection's call
releases the GIL (core.detect, ctypes), and the thread's scheduling priority is lowered (``nice``)
so that on a busy CPU the frames' own work comes first. Its result is taken up by a later frame
(core.reconstruct.Reconstructor, ``detect_in_thread``).

No ROS here.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_NICE = 10
"""Niceness added to the detection thread (Linux: per thread; 0 = the caller's priority)."""


@dataclass
class DetectionResult:
    """A finished background detection: what it found, how long it took (ms), the image it ran on
    and the caller's context of that frame."""

    detections: list
    ms: float
    image: np.ndarray
    context: Any


def lower_thread_priority(nice: int) -> bool:
    """Raise the calling thread's niceness by ``nice`` (Linux threads have their own); False where
    the platform does not allow it (then the thread keeps the process's priority)."""
    if nice <= 0 or not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
        return True
    except OSError as err:
        log.debug("detection thread keeps its priority: %s", err)
        return False


class DetectionThread:
    """One detection at a time in a worker thread.

    Args:
        detect: the detector call, image -> detections (thread-safe: core.detect's backends lock
            their buffers).
        nice: niceness added to the worker (:data:`DEFAULT_NICE`), in [0, 19].

    Example:
        >>> worker = DetectionThread(detector.detect)          # doctest: +SKIP
        >>> worker.submit(image, context=timestamp)
        >>> result = worker.poll()                           # None until it has finished
    """

    def __init__(self, detect: Callable[[np.ndarray], list], nice: int = DEFAULT_NICE) -> None:
        if not 0 <= nice <= 19:
            raise ValueError(f"nice must be in [0, 19], got {nice}")
        self._detect = detect
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="face_expr_detect",
                                        initializer=lower_thread_priority, initargs=(nice,))
        self._job: tuple[Future, np.ndarray, Any] | None = None

    @property
    def busy(self) -> bool:
        """A detection was submitted and its result not yet taken."""
        return self._job is not None

    def submit(self, image: np.ndarray, context: Any = None) -> None:
        """Start detecting ``image`` (kept until :meth:`poll` returns it); ``context`` comes back
        with the result. RuntimeError while a detection is still pending."""
        if self._job is not None:
            raise RuntimeError("a detection is still pending: poll() it or discard() it first")
        self._job = (self._pool.submit(self._timed, image), image, context)

    def poll(self, wait: bool = False) -> DetectionResult | None:
        """The finished detection (taken: the thread is free again), or None when none is pending
        or (without ``wait``) it is still running. A detector error is raised here."""
        if self._job is None:
            return None
        future, image, context = self._job
        if not wait and not future.done():
            return None
        self._job = None
        detections, ms = future.result()
        return DetectionResult(detections, ms, image, context)

    def discard(self) -> None:
        """Forget the pending detection (it finishes in the background; its result is dropped)."""
        self._job = None

    def close(self) -> None:
        """Stop the worker once the running detection, if any, has finished."""
        self._job = None
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _timed(self, image: np.ndarray) -> tuple[list, float]:
        start = time.perf_counter()
        detections = self._detect(image)
        return detections, (time.perf_counter() - start) * 1000.0

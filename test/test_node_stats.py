"""NodeStats (the node's /diagnostics numbers), without ROS."""
from __future__ import annotations

import pytest

from face_expr_ros.ros.stats import NodeStats, stamp_latency_ms


def test_stamp_latency_from_the_header_stamp():
    stamp_ns = 1_700_000_000 * 10 ** 9 + 500
    assert stamp_latency_ms(stamp_ns, stamp_ns + 25_000_000) == pytest.approx(25.0)


def test_zero_stamp_gives_no_stamp_latency():
    """Drivers that send zero stamps: no ~1.7e12 ms 'latency' from the epoch."""
    assert stamp_latency_ms(0, 1_700_000_000 * 10 ** 9) is None


def test_frames_without_stamp_are_left_out_of_the_stamp_percentiles():
    stats = NodeStats()
    for receive_ms in (10.0, 20.0, 30.0):
        stats.add_latency(receive_ms, stamp_latency_ms(0, 1_700_000_000 * 10 ** 9))
    s = stats.snapshot()
    assert s["latency_receive_p50_ms"] == pytest.approx(20.0)
    assert s["latency_stamp_p50_ms"] is None and s["latency_stamp_p95_ms"] is None

    stats.add_latency(40.0, 50.0)
    s = stats.snapshot()
    assert s["latency_receive_p50_ms"] == pytest.approx(25.0)
    assert s["latency_stamp_p50_ms"] == pytest.approx(50.0)
    assert s["latency_stamp_p95_ms"] == pytest.approx(50.0)


def test_no_frames_no_latency():
    s = NodeStats().snapshot()
    assert s["latency_receive_p50_ms"] is None and s["latency_stamp_p95_ms"] is None

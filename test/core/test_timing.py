import pytest

from hamster_core.timing import IntervalStats


def test_steady_ticks_give_rate_and_zero_jitter():
    stats = IntervalStats()
    for i in range(101):
        stats.tick(i * 0.01)
    summary = stats.summary()
    assert summary["rate_hz"] == pytest.approx(100.0)
    assert summary["interval_p50_ms"] == pytest.approx(10.0)
    assert summary["interval_max_ms"] == pytest.approx(10.0)


def test_one_late_tick_shows_in_the_max_and_window_forgets_it():
    stats = IntervalStats(window=50)
    times = [i * 0.01 for i in range(50)] + [0.49 + 0.2]
    for t in times:
        stats.tick(t)
    assert stats.summary()["interval_max_ms"] == pytest.approx(200.0)
    for i in range(1, 60):
        stats.tick(0.69 + i * 0.01)
    assert stats.summary()["interval_max_ms"] == pytest.approx(10.0)


def test_empty_and_invalid():
    assert IntervalStats().summary() == {}
    with pytest.raises(ValueError):
        IntervalStats(window=1)

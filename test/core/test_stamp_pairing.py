"""hamster_core.stamp_pairing: depth pairs with the nearest colour stamp whichever comes first; waiting is bounded."""
import pytest

from hamster_core.stamp_pairing import StampPairer

MS = 1_000_000


def released(pairings):
    return [(p.depth, p.color) for p in pairings]


def test_depth_waits_for_its_colour_frame_and_takes_the_nearest():
    pairer = StampPairer(tolerance_ns=20 * MS)
    assert released(pairer.add_color(0, "c0")) == []
    assert released(pairer.add_depth(0, "d0")) == [("d0", "c0")]            # colour first: at once
    assert released(pairer.add_depth(33 * MS, "d1")) == []                   # its colour may still come
    assert released(pairer.add_color(34 * MS, "c1")) == [("d1", "c1")]      # nearer than c0 (33 ms away)
    assert released(pairer.add_depth(66 * MS, "d2")) == []
    assert released(pairer.add_color(60 * MS, "c2")) == []                   # not past d2 yet
    assert released(pairer.add_color(70 * MS, "c3")) == [("d2", "c3")]      # 4 ms beats 6 ms
    assert pairer.unpaired == {}


def test_waiting_is_bounded_and_unpaired_frames_are_counted_by_reason():
    pairer = StampPairer(tolerance_ns=10 * MS, max_wait=1)
    assert released(pairer.add_depth(0, "d0")) == []
    assert released(pairer.add_depth(33 * MS, "d1")) == [("d0", None)]     # no colour at all so far
    pairer.add_color(100 * MS, "c")
    assert pairer.unpaired == {"no colour frame yet": 1, "no colour frame within the tolerance": 1}
    with pytest.raises(ValueError, match="tolerance_ns"):
        StampPairer(tolerance_ns=-1)
    with pytest.raises(ValueError, match="max_wait"):
        StampPairer(tolerance_ns=0, max_wait=-1)

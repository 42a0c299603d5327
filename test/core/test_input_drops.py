"""Dropped-input accounting shared by the nodes (issue 21): every message counted, each reason logged once per
episode with the count so far."""
from hamster_core.input_drops import InputDrops


def test_every_message_is_counted_and_each_reason_reported_once_per_episode():
    drops = InputDrops()
    assert [drops.count("masks", "invalid") for _ in range(3)] == [True, False, False]
    assert drops.count("path", "invalid")
    drops.new_episode()
    assert drops.count("masks", "invalid") and drops.counts == {"masks: invalid": 4, "path: invalid": 1}


def test_record_gives_the_log_line_only_for_a_new_reason_with_the_count_so_far():
    drops = InputDrops()
    assert drops.record("image", "invalid", "got '16UC1'") == "dropped image invalid: got '16UC1' (1 so far)"
    assert drops.record("image", "invalid", "got '16UC1'") is None
    drops.new_episode()
    assert drops.record("image", "invalid") == "dropped image invalid (3 so far)"
    assert drops.diagnostic_values() == [("dropped image: invalid", "3")]

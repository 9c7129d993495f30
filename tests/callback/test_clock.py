import pytest

from lottery.callback.clock import RoundClock
from lottery.callback.rewind import RewindPoint


def clock(rewind, epochs=4, rounds=3):
    return RoundClock(rounds, epochs, RewindPoint.parse(rewind))


@pytest.mark.parametrize("rewind,steps,later", [
    ("init", None, 4), ("none", None, 4), ("2ep", None, 2),   # whole epochs: known before the epoch length
    ("1ep5it", None, 4),                                      # an iteration part waits for the epoch length
    ("1ep5it", 10, 3), ("25it", 10, 2), ("2ep", 10, 2), ("init", 10, 4),
])
def test_later_rounds_train_what_round_0_had_from_the_rewind_point(rewind, steps, later):
    c = clock(rewind)
    c.steps_per_epoch = steps
    assert c.later_epochs == later
    assert [c.round_start_epoch(r) for r in range(5)] == [0, 4, 4 + later, 4 + 2 * later, 4 + 3 * later]


def test_rewind_step_counts_optimizer_steps_of_round_0():
    c = clock("1ep5it")
    assert c.rewind_step == 5  # before the epoch length is known only the iteration part counts
    c.steps_per_epoch = 10
    assert c.rewind_step == 15


@pytest.mark.parametrize("rewind,steps,match", [
    ("5ep", None, "beyond the round length"), ("4ep", None, "beyond the round length"),
    ("3ep10it", 10, "round 0 has only 40 steps"), ("40it", 10, "round 0 has only 40 steps"),
])
def test_a_rewind_point_outside_round_0_is_refused(rewind, steps, match):
    with pytest.raises(ValueError, match=match):
        c = clock(rewind)
        c.steps_per_epoch = steps
        c.check()


def test_a_step_rewind_needs_an_epoch_length():
    with pytest.raises(ValueError, match="needs a train dataloader with a length"):
        clock("10it").start(trainer=None, steps_per_epoch=None)

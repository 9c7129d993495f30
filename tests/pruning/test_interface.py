from helpers import MLP
from lottery import prune
from lottery.plan import Plan
from lottery.pruning import Magnitude, Pruner
from lottery.pruning.inverted import Inverted


class Recording(Pruner):
    """Magnitude scores; records the masks it is handed."""

    name = "recording"
    reads_masks = True

    def __init__(self):
        self.seen = []

    def scores(self, model, batches=None, masks=None):
        self.seen.append(masks)
        return Magnitude().scores(model)


class TwoArguments(Pruner):
    """A pruner written against the two-argument interface: never handed masks."""

    name = "two_arguments"

    def scores(self, model, batches=None):
        return Magnitude().scores(model)


def test_masks_are_handed_only_to_pruners_that_read_them():
    model = MLP()
    plan = Plan(model, 0.5, "global")
    masks = plan.dense_masks(model)
    rec = Recording()
    after = plan.step(model, rec, masks, 1)
    assert rec.seen == [masks]
    assert plan.step(model, TwoArguments(), masks, 1).keys() == after.keys()  # no masks= for it
    inverted = Inverted(rec)
    assert inverted.reads_masks
    plan.step(model, inverted, after, 2)
    assert rec.seen[-1] is after


def test_a_two_argument_pruner_runs_through_prune():
    assert abs(prune(MLP(), TwoArguments(), density=0.5).density - 0.5) < 0.01

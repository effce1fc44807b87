"""training/: the schedule, the optimizer over trainable modules only, and one candidate's
training (``train_candidate``: the candidate trainer as a generation of one).

Uses a three-layer toy model (``Linear -> frozen Linear -> Linear``) instead of a ViT: the
training loop does not care what the modules are, and the toy keeps every test in
milliseconds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from trainer_testutil import (
    HP,
    forever,
    one_torch_thread,
    same_state,
    snapshot,
    toy_data,
    toy_model,
)

from mutask.trainer.training import (
    Candidate,
    Interrupted,
    TrainSettings,
    evaluate,
    train_candidate,
)
from mutask.trainer.training.optim import make_optimizer
from mutask.trainer.training.schedule import lr_at

ONE_STEP = TrainSettings(rounds=1, steps_per_round=1)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _train(
    model,
    trainable,
    *,
    hparams=HP,
    momentum=None,
    settings=ONE_STEP,
    bar=-math.inf,
    score_fn=lambda q: q,
    **kw,
):
    """train_candidate on a fixed batch, validated on that same batch."""
    batch = toy_data()
    momentum = momentum if momentum is not None else [{} for _ in trainable]
    candidate = Candidate(model, trainable, momentum, hparams, score_fn, bar)
    return train_candidate(candidate, forever(batch), batch, settings, **kw)


def _flat(modules: list[nn.Module]) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


# -- schedule -------------------------------------------------------------------------------


def test_lr_warmup_rises_linearly_to_the_base_rate() -> None:
    # 100 steps, 10% warmup: steps 0..9 climb by base/10 each, step 9 is the peak
    lrs = [lr_at(s, 100, 0.5, 0.1) for s in range(10)]
    assert lrs == pytest.approx([0.05 * (i + 1) for i in range(10)])
    assert lrs[-1] == pytest.approx(0.5)


def test_lr_cosine_decays_monotonically_to_near_zero() -> None:
    lrs = [lr_at(s, 100, 0.5, 0.1) for s in range(10, 100)]
    assert lrs[0] == pytest.approx(0.5)  # decay starts at the peak
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    assert lr_at(55, 100, 0.5, 0.1) == pytest.approx(0.25)  # half-way: half the rate
    assert lrs[-1] < 1e-3 * 0.5


def test_lr_without_warmup_starts_at_the_base_rate() -> None:
    assert lr_at(0, 10, 0.3, 0.0) == pytest.approx(0.3)


# -- optimizer ------------------------------------------------------------------------------


def test_optimizer_covers_exactly_the_trainable_parameters() -> None:
    _, trainable, frozen = toy_model()
    opt = make_optimizer(trainable, [{}, {}], HP)
    covered = {id(p) for g in opt.param_groups for p in g["params"]}
    assert covered == {id(p) for m in trainable for p in m.parameters()}
    assert not covered & {id(p) for p in frozen.parameters()}


@pytest.mark.parametrize("nesterov", [False, True])
def test_optimizer_takes_lr_momentum_and_nesterov_from_hparams(nesterov: bool) -> None:
    _, trainable, _ = toy_model()
    hp = {**HP, "opt_lr": 0.3, "opt_momentum": 0.8, "opt_nesterov": nesterov}
    group = make_optimizer(trainable, [{}, {}], hp).param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.3, 0.8, nesterov)


def test_optimizer_is_seeded_with_copies_of_the_inherited_momentum() -> None:
    _, trainable, _ = toy_model()
    first, last = trainable
    inherited = {"weight": torch.full_like(first.weight, 0.25)}
    opt = make_optimizer(trainable, [inherited, {}], HP)
    buf = opt.state[first.weight]["momentum_buffer"]
    assert torch.equal(buf, inherited["weight"])
    assert buf.data_ptr() != inherited["weight"].data_ptr()  # a copy, not the ancestor's own
    assert first.bias not in opt.state  # no inherited buffer: none is invented
    assert last.weight not in opt.state


def test_optimizer_ignores_inherited_momentum_of_the_wrong_shape() -> None:
    _, trainable, _ = toy_model()
    opt = make_optimizer(trainable, [{"weight": torch.zeros(3, 3)}, {}], HP)
    assert trainable[0].weight not in opt.state


# -- the candidate trainer --------------------------------------------------------------------


def test_frozen_modules_stay_bit_identical_and_get_no_grad() -> None:
    model, trainable, frozen = toy_model()
    before = snapshot([frozen])
    trainable_before = snapshot(trainable)
    _train(model, trainable, settings=TrainSettings(rounds=2, steps_per_round=3))
    assert same_state(snapshot([frozen]), before)
    assert all(p.grad is None and not p.requires_grad for p in frozen.parameters())
    assert not same_state(snapshot(trainable), trainable_before)  # the others did train


def test_inherited_momentum_enters_the_first_update() -> None:
    """Step 1 with SGD momentum mu: delta = -lr * (mu * inherited + grad)."""
    deltas = []
    inherited = [
        {k: torch.full_like(p, 0.5) for k, p in m.named_parameters()} for m in toy_model()[1]
    ]
    zeros = [{k: torch.zeros_like(t) for k, t in d.items()} for d in inherited]
    for momentum in (inherited, zeros):
        model, trainable, _ = toy_model()
        before = _flat(trainable)
        _train(model, trainable, momentum=momentum)
        deltas.append(_flat(trainable) - before)
    lr, mu = HP["opt_lr"], HP["opt_momentum"]
    expected = -lr * mu * torch.cat([t.flatten() for d in inherited for t in d.values()])
    assert torch.allclose(deltas[0] - deltas[1], expected, atol=1e-6)


def test_gradients_are_clipped_to_global_norm_one() -> None:
    # inputs scaled by 1e4 make the raw gradient norm huge; with momentum 0 and no
    # inherited buffer one step moves the params by exactly lr * clipped gradient
    hp = {**HP, "opt_lr": 10.0, "opt_momentum": 0.0}
    x, y = toy_data()
    norms = {}
    for clip in (1.0, 0.0):
        model, trainable, _ = toy_model()
        before = _flat(trainable)
        settings = TrainSettings(rounds=1, steps_per_round=1, clip_norm=clip)
        train_candidate(
            Candidate(model, trainable, [{}, {}], hp, lambda q: q, -math.inf),
            forever((x * 1e4, y)),
            (x, y),
            settings,
        )
        norms[clip] = float((_flat(trainable) - before).norm())
    assert norms[1.0] == pytest.approx(10.0, rel=1e-3)  # lr * 1.0
    assert norms[0.0] > 100 * norms[1.0]  # unclipped, the same step is far larger


def test_best_round_at_or_above_the_bar_is_restored_at_the_end() -> None:
    model, trainable, _ = toy_model()
    scores = iter([0.5, 0.9, 0.3])  # round 2 is best, round 3 is worse
    after_step: dict[int, list[dict[str, torch.Tensor]]] = {}
    settings = TrainSettings(rounds=3, steps_per_round=2)
    result, _ = _train(
        model,
        trainable,
        settings=settings,
        bar=0.6,
        score_fn=lambda _q: next(scores),
        on_step=lambda s: after_step.__setitem__(s, snapshot(trainable)),
    )
    assert [r.snapshot for r in result.rounds] == [False, True, False]
    assert result.score == 0.9 and result.quality == result.rounds[1].quality
    assert same_state(snapshot(trainable), after_step[4])  # end of round 2
    assert not same_state(after_step[4], after_step[6])  # round 3 did change them


def test_score_equal_to_the_bar_counts_as_improved() -> None:
    model, trainable, _ = toy_model()
    result, _ = _train(model, trainable, bar=0.5, score_fn=lambda _q: 0.5)
    assert result.quality is not None and result.score == 0.5


def test_no_round_reaching_the_bar_gives_no_quality_and_the_inherited_momentum() -> None:
    model, trainable, _ = toy_model()
    inherited = [{"weight": torch.ones_like(m.weight)} for m in trainable]
    result, momentum = _train(
        model,
        trainable,
        momentum=inherited,
        bar=2.0,
        settings=TrainSettings(rounds=2, steps_per_round=2),
    )
    assert result.quality is None and result.score is None
    assert [r.snapshot for r in result.rounds] == [False, False]
    assert same_state(momentum, inherited)


def test_returned_momentum_is_the_optimizer_state_of_the_best_round() -> None:
    model, trainable, _ = toy_model()
    result, momentum = _train(model, trainable)
    assert result.quality is not None
    assert [sorted(m) for m in momentum] == [["bias", "weight"], ["bias", "weight"]]
    assert any(t.abs().sum() > 0 for m in momentum for t in m.values())


def test_counts_steps_and_examples() -> None:
    model, trainable, _ = toy_model()
    result, _ = _train(model, trainable, settings=TrainSettings(rounds=2, steps_per_round=3))
    assert result.steps == 6 and result.examples == 6 * 32
    assert [r.round for r in result.rounds] == [0, 1]


def test_should_stop_raises_interrupted_after_the_current_step() -> None:
    model, trainable, _ = toy_model()
    steps: list[int] = []
    with pytest.raises(Interrupted):
        _train(
            model,
            trainable,
            settings=TrainSettings(rounds=2, steps_per_round=5),
            on_step=steps.append,
            should_stop=lambda: len(steps) >= 3,
        )
    assert steps == [1, 2, 3]


# -- evaluate -------------------------------------------------------------------------------


def test_evaluate_is_top1_accuracy_over_all_batches() -> None:
    # nn.Identity: the images are the logits; 7 of 10 rows have their argmax at the label
    images = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])]
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 2, 0, 1])
    assert evaluate(nn.Identity(), images, labels, batch_size=3) == pytest.approx(0.7)


def test_evaluate_restores_the_training_mode() -> None:
    model, _, _ = toy_model()
    x, y = toy_data(8)
    model.train()
    evaluate(model, x, y)
    assert model.training
    model.eval()
    evaluate(model, x, y)
    assert not model.training

"""XLA done properly (training/xla.py), asserted with torch_xla.debug.metrics, in process.

After its first round a candidate's rounds compile nothing; a generation of the same
architectures with other learning rates, momenta and warm-ups compiles nothing at all; a
generation compiles a small constant number of graphs per distinct architecture; a round
reads one value back to the host per candidate (its accuracy, at the round's end); and a
candidate trains to the same bits alone, beside others, or twice (what makes the evolution
the same for any chip count).
"""

from __future__ import annotations

import math

import pytest
import torch
from xla_testutil import HEAD, HP, TOP, candidate, data, params, require_xla, root_modules

from mutask.trainer.data import BatchStream
from mutask.trainer.training import Lockstep, TrainSettings, evaluate
from mutask.trainer.training.schedule import lr_at

torch_xla = require_xla()
metrics = pytest.importorskip("torch_xla.debug.metrics")
xla_training = pytest.importorskip("mutask.trainer.training.xla")

SETTINGS = TrainSettings(rounds=2, steps_per_round=3, eval_batch_size=48)  # 100 = 48+48+4


def _transfers_to_host() -> int:
    data = metrics.metric_data("TransferFromDeviceTime")
    return int(data[0]) if data else 0


def _generation(device, root, members, x, y):
    """A Lockstep of candidates (own components, hparams) on one shared batch stream."""
    candidates = [candidate(root, own, hp) for own, hp in members]
    stream = BatchStream(x, y, 32, seed=0, augmenter=None)
    return candidates, Lockstep(candidates, iter(stream), (x[:100], y[:100]), SETTINGS)


def test_rounds_after_warmup_and_new_hparams_compile_nothing() -> None:
    device = torch_xla.device()
    root = root_modules(device)
    x, y = data()
    first = [(HEAD, HP), (TOP, HP), (TOP, {**HP, "opt_lr": 0.1, "opt_momentum": 0.8})]
    start = xla_training.compilations()
    _, loop = _generation(device, root, first, x, y)
    with loop:
        loop.train_round()  # warm-up: every graph compiles here
        warm = xla_training.compilations()
        before = _transfers_to_host()
        loop.train_round()
        assert xla_training.compilations() == warm, "a round after warm-up compiled a graph"
        assert _transfers_to_host() - before == 3, "one host read per candidate and round"
        loop.finish()
    per_generation = xla_training.compilations() - start
    # two architectures: each its init, step, validation and snapshot graphs, plus one per
    # kind of shared frozen layer (patch embedding, class token, position embedding, block)
    assert 0 < per_generation <= 8 * 2 + 6, per_generation

    again = [
        (HEAD, {**HP, "opt_lr": 0.02, "opt_lr_warmup_ratio": 0.5}),
        (TOP, {**HP, "opt_momentum": 0.95}),
        (TOP, {**HP, "opt_lr": 0.3}),
    ]
    before = xla_training.compilations()
    _, loop = _generation(device, root, again, x, y)
    with loop:
        loop.train_round()
        loop.train_round()
        loop.finish()
    assert xla_training.compilations() == before, "other hparams recompiled a graph"


def test_a_candidate_trains_to_the_same_bits_alone_beside_others_and_twice() -> None:
    device = torch_xla.device()
    root = root_modules(device)
    x, y = data()
    hp = {**HP, "opt_nesterov": True}
    runs = []
    for members in ([(TOP, hp)], [(HEAD, HP), (TOP, hp), (TOP, HP)], [(TOP, hp)]):
        candidates, loop = _generation(device, root, members, x, y)
        with loop:
            loop.train_round()
            loop.train_round()
            results = loop.finish()
        k = next(i for i, (own, h) in enumerate(members) if own == TOP and h is hp)
        runs.append((params(candidates[k].trainable), results[k][0].quality))
    (alone, q_alone), (beside, q_beside), (twice, q_twice) = runs
    assert q_alone == q_beside == q_twice
    for a, b, c in zip(alone, beside, twice, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_the_schedule_on_the_device_is_the_host_schedule() -> None:
    device = torch_xla.device()
    root = root_modules(device)
    x, y = data()
    _, loop = _generation(device, root, [(HEAD, HP)], x, y)
    trainer = loop.trainers[0]
    total = trainer.total_steps
    seen = []
    for step in range(total + 2):  # past the end the last rate holds
        trainer.set_lr(step)
        seen.append(float(trainer.optimizer.lr.to("cpu")))
    base, warmup = float(HP["opt_lr"]), float(HP["opt_lr_warmup_ratio"])
    want = [lr_at(min(s, total), total, base, warmup) for s in range(total + 2)]
    assert seen == pytest.approx(want, rel=1e-6)
    trainer.set_lr(1)  # a jump back moves the counter over once
    assert float(trainer.optimizer.lr.to("cpu")) == pytest.approx(lr_at(1, total, base, warmup))
    loop.__exit__(None, None, None)


def test_padded_validation_counts_only_the_real_examples() -> None:
    device = torch_xla.device()
    model = torch.nn.Linear(4, 3)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(101, 4, generator=gen), torch.randint(0, 3, (101,), generator=gen)
    want = evaluate(model, x, y, batch_size=16)  # eager CPU: 6 full chunks and one of 5
    model.to(device)
    before = xla_training.compilations()
    got = evaluate(model, x, y, batch_size=16)  # XLA: 7 chunks of 16, the tail padded
    assert math.isclose(got, want)
    assert xla_training.compilations() - before <= 3, "one graph for every chunk"

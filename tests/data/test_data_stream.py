"""BatchStream: same seed -> same batches, every example once per epoch, exact-size batches."""

from __future__ import annotations

import pytest
import torch

from mutask.trainer.data import Augmenter, BatchStream


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 3, 4, 4) / n
    return images.contiguous(), torch.arange(n)


def _ids(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[int]:
    return torch.cat([y for _, y in batches]).tolist()


def test_same_seed_same_batches() -> None:
    x, y = _data(50)
    aug = Augmenter({"ds_crop": True, "ds_flip_left_right": True, "ds_hue_delta": 0.1})
    a = BatchStream(x, y, 8, seed=3, augmenter=aug).take(20)
    b = BatchStream(x, y, 8, seed=3, augmenter=aug).take(20)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    c = BatchStream(x, y, 8, seed=4, augmenter=aug).take(20)
    assert _ids(a) != _ids(c)


def test_every_example_once_per_epoch_with_wraparound() -> None:
    n, batch = 10, 3
    x, y = _data(n)
    stream = BatchStream(x, y, batch, seed=0, augmenter=None)
    batches = stream.take(20)  # 60 examples = 6 epochs
    assert all(len(b[1]) == batch for b in batches)
    ids = _ids(batches)
    epochs = [ids[i : i + n] for i in range(0, len(ids), n)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(n))
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled each epoch
    assert stream.epoch == 5 and stream.position == n


def test_images_match_labels_and_no_augmentation_is_exact() -> None:
    x, y = _data(13)
    for xb, yb in BatchStream(x, y, 5, seed=1, augmenter=None).take(6):
        assert torch.equal(xb, x[yb])


def test_batch_larger_than_dataset() -> None:
    x, y = _data(3)
    ((xb, yb),) = BatchStream(x, y, 7, seed=0, augmenter=None).take(1)
    assert xb.shape == (7, 3, 4, 4)
    assert sorted(yb[:6].tolist()) == [0, 0, 1, 1, 2, 2]


def test_iteration_continues_the_stream() -> None:
    x, y = _data(20)
    stream = BatchStream(x, y, 4, seed=0, augmenter=None)
    first = [b for _, b in zip(range(3), stream, strict=False)]
    rest = [b for _, b in zip(range(3), stream, strict=False)]
    ref = BatchStream(x, y, 4, seed=0, augmenter=None).take(6)
    assert _ids(first + rest) == _ids(ref)


def test_state_dict_resumes_exactly() -> None:
    x, y = _data(30)
    aug = Augmenter({"ds_crop": True, "ds_brightness_delta": 0.1})
    stream = BatchStream(x, y, 7, seed=9, augmenter=aug)
    stream.take(5)
    state = stream.state_dict()
    expected = stream.take(5)
    resumed = BatchStream(x, y, 7, seed=9, augmenter=aug)
    resumed.load_state_dict(state)
    for (xa, ya), (xb, yb) in zip(expected, resumed.take(5), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(ValueError):
        BatchStream(x, y, 7, seed=8, augmenter=aug).load_state_dict(state)


def test_bad_arguments() -> None:
    x, y = _data(4)
    with pytest.raises(ValueError):
        BatchStream(x, y, 0, seed=0, augmenter=None)
    with pytest.raises(ValueError):
        BatchStream(x, y[:3], 2, seed=0, augmenter=None)
    with pytest.raises(ValueError):
        BatchStream(x[:0], y[:0], 2, seed=0, augmenter=None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_stream_stays_on_device_and_matches_cpu() -> None:
    x, y = _data(40)
    aug = Augmenter({"ds_crop": True, "ds_flip_left_right": True})
    gpu = BatchStream(x.cuda(), y.cuda(), 8, seed=2, augmenter=aug).take(6)
    cpu = BatchStream(x, y, 8, seed=2, augmenter=aug).take(6)
    for (xg, yg), (xc, yc) in zip(gpu, cpu, strict=True):
        assert xg.device.type == "cuda" and yg.device.type == "cuda"
        assert torch.equal(yg.cpu(), yc)
        torch.testing.assert_close(xg.cpu(), xc, atol=1e-5, rtol=0)

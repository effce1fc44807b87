"""runtime/memory.py: free memory from /proc/meminfo and the cgroup, and the run's estimate."""

from __future__ import annotations

from pathlib import Path

import torch

from mutask.trainer.models import get_shape
from mutask.trainer.runtime.memory import GIB, available_bytes, path_params, training_bytes


def _files(tmp_path: Path, meminfo_kb: int, cgroup: dict[str, str] | None) -> tuple[Path, Path]:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: 999999999 kB\nMemAvailable: {meminfo_kb} kB\n")
    group = tmp_path / "cgroup"
    group.mkdir()
    for name, text in (cgroup or {}).items():
        (group / name).write_text(text)
    return meminfo, group


def test_cpu_memory_is_the_smaller_of_meminfo_and_the_cgroup_headroom(tmp_path: Path) -> None:
    cgroup = {
        "memory.max": str(4 * GIB),
        "memory.current": str(3 * GIB),
        "memory.stat": f"anon 1\ninactive_file {GIB // 2}\n",
    }
    meminfo, group = _files(tmp_path, 8 * 1024 * 1024, cgroup)  # 8 GiB free on the node
    free = available_bytes(torch.device("cpu"), meminfo=meminfo, cgroup=group)
    assert free == 4 * GIB - (3 * GIB - GIB // 2)  # reclaimable cache counts as free


def test_without_a_cgroup_limit_meminfo_decides(tmp_path: Path) -> None:
    meminfo, group = _files(tmp_path, 1024, {"memory.max": "max\n"})
    assert available_bytes(torch.device("cpu"), meminfo=meminfo, cgroup=group) == 1024 * 1024
    assert available_bytes(torch.device("meta")) is None  # unknown devices: no check


def test_the_estimate_grows_with_batch_images_and_candidates() -> None:
    shape = get_shape("mu-tiny", 16)
    base = training_bytes(shape, 10, examples=1000, batch_size=64, candidates=1)
    assert base.data == 1000 * 3 * 16 * 16 * 4
    assert base.per_candidate > 3 * path_params(shape, 10) * 4
    assert training_bytes(shape, 10, 1000, 128, 1).per_candidate > base.per_candidate
    assert training_bytes(shape, 10, 1000, 64, 4).total == base.data + 4 * base.per_candidate
    big = training_bytes(get_shape("mu-tiny", 1024), 10, 1000, 64, 1)
    assert big.total > 1000 * GIB  # attention over 65,537 tokens: refused on any machine

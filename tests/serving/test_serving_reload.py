"""Hot reload: tasks published (or revisited) while `mutask serve` runs become servable without
a restart, no request fails meanwhile, and every earlier task answers bit-identically."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from serve_support import (
    FLIPPED,
    LOW,
    TASKS,
    Served,
    introduce,
    sample_images,
    start_server,
    stop_server,
    trainer_logits,
)

from mutask.trainer.evolution import ROOT_TASK


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll until true (pytest-timeout bounds the wait)."""
    while not condition():
        time.sleep(0.1)


def versions(served: Served) -> dict[str, str]:
    index = served.request("POST", "/v2/repository/index").json()
    return {m["name"]: m["version"] for m in index}


class Hammer(threading.Thread):
    """Requests every task in a loop until stopped; records every status and exception."""

    def __init__(self, served: Served, tasks: list[str]) -> None:
        super().__init__(daemon=True)
        self.served, self.tasks = served, tasks
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        images = sample_images(2, seed=7)
        doc = {
            "inputs": [
                {
                    "name": "images",
                    "datatype": "FP32",
                    "shape": list(images.shape),
                    "data": images.reshape(-1).tolist(),
                }
            ]
        }
        i = 0
        while not self.stop.is_set():
            try:
                r = self.served.post(f"/v2/models/{self.tasks[i % len(self.tasks)]}/infer", doc)
                self.statuses.append(r.status)
                if r.status != 200:
                    self.errors.append(r.body.decode())
            except Exception as err:  # a refused connection would be a failure too
                self.errors.append(repr(err))
            i += 1


def test_publish_and_revisit_while_serving(store_copy: Path, tmp_path: Path) -> None:
    served = start_server(["--store", str(store_copy)], tmp_path, "--poll-seconds", "0.2")
    try:
        images = sample_images(4, seed=11)
        before = {task: served.infer_json(task, images) for task in TASKS}
        assert versions(served) == {ROOT_TASK: "0", "low": "0", "private:parity": "0"}
        hammer = Hammer(served, TASKS)
        hammer.start()
        introduce(store_copy, "flipped", FLIPPED)  # a new task, published by the trainer
        wait_until(lambda: "flipped" in versions(served))
        introduce(store_copy, "low", LOW, seed=1)  # a revisit: low's next iteration
        wait_until(lambda: versions(served)["low"] == "1")
        hammer.stop.set()
        hammer.join()
        assert hammer.errors == [], hammer.errors[:3]
        assert len(hammer.statuses) > 0

        for task in (ROOT_TASK, "private:parity"):  # untouched tasks: bit for bit
            assert np.array_equal(served.infer_json(task, images), before[task]), task
        for task in ("flipped", "low"):  # new and revisited: the newly published paths
            expected = trainer_logits(store_copy, task, images)
            assert np.array_equal(served.infer_json(task, images), expected), task
        metrics = served.get("/metrics").body.decode()
        assert 'mutask_serve_task_version{task="low"} 1.0' in metrics
        assert "mutask_serve_tasks 4.0" in metrics
    finally:
        stop_server(served)


def test_damage_is_left_out_and_a_failed_reload_keeps_the_last_system_served(
    store_copy: Path, tmp_path: Path
) -> None:
    """A damaged manifest is left out (the store's damage scan; the log names it) and the
    rest is still served; a reload that fails (a published task whose blob is corrupt) keeps
    the last system served and is retried until it loads."""
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(store_copy, elsewhere)
    introduce(elsewhere, "flipped", FLIPPED)  # published elsewhere, copied in below
    had = {p.name for p in (store_copy / "blobs").iterdir()}
    new_blobs = sorted(p.name for p in (elsewhere / "blobs").iterdir() if p.name not in had)
    assert new_blobs
    served = start_server(["--store", str(store_copy)], tmp_path, "--poll-seconds", "0.2")
    try:
        images = sample_images(2, seed=3)
        before = served.infer_json("low", images)
        broken = store_copy / "tasks" / "broken" / "manifest.json"
        broken.parent.mkdir(parents=True)
        broken.write_text("{ not json")
        wait_until(lambda: "task broken: DAMAGED" in served.log.read_text())
        assert served.get("/v2/health/ready").status == 200
        assert np.array_equal(served.infer_json("low", images), before)
        assert "broken" not in versions(served)
        broken.unlink()

        for name in new_blobs:  # flipped's blobs, corrupt; then its manifest
            (store_copy / "blobs" / name).write_bytes(b"not a safetensors file")
        manifest = store_copy / "tasks" / "flipped" / "manifest.json"
        manifest.parent.mkdir(parents=True)
        shutil.copyfile(elsewhere / "tasks" / "flipped" / "manifest.json", manifest)
        wait_until(
            lambda: (
                'mutask_serve_reloads_total{outcome="failed"}'
                in served.get("/metrics").body.decode()
            )
        )
        assert served.get("/v2/health/ready").status == 200
        assert np.array_equal(served.infer_json("low", images), before)
        assert "flipped" not in versions(served)
        for name in new_blobs:  # repaired: the next poll loads it
            shutil.copyfile(elsewhere / "blobs" / name, store_copy / "blobs" / name)
        wait_until(lambda: "flipped" in versions(served))
        assert np.array_equal(served.infer_json("low", images), before)
    finally:
        stop_server(served)

"""Support for the serving tests: a small system grown by the real trainer, and a real
`mutask serve` process on 127.0.0.1 (started and stopped by the fixtures in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mutask.trainer.config import (
    BudgetConfig,
    DatasetConfig,
    IntroduceConfig,
    ModelConfig,
    SearchConfig,
)
from mutask.trainer.evolution import ROOT_TASK
from mutask.trainer.evolution import Path as EvoPath
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.runtime.device import select_device
from mutask.trainer.store.system_store import SystemStore
from mutask.trainer.training import logits_of

MUTASK = str(Path(sys.executable).parent / "mutask")
TINY = BudgetConfig(
    generations=1,
    candidates=2,
    validation_rounds=1,
    steps_per_round=4,
    batch_size=32,
    max_validation_examples=64,
)
DIGITS = DatasetConfig(source="digits")
LOW = DatasetConfig(source="digits", labels=[0, 1, 2, 3, 4])
PARITY = DatasetConfig(source="digits", label_map={str(i): i % 2 for i in range(10)})
FLIPPED = DatasetConfig(source="digits", transform="flip_lr")
IMAGE_SIZE = 16
TASKS = [ROOT_TASK, "low", "private:parity"]  # what the grown store holds


def config(store: Path, task: str, dataset: DatasetConfig) -> IntroduceConfig:
    return IntroduceConfig(
        task=task,
        dataset=dataset,
        store=str(store),
        budget=TINY,
        search=SearchConfig(size_scale=0.9),
        model=ModelConfig(image_size=IMAGE_SIZE),  # not the digits' native 8 px
        device="cpu",
    )


def engine(store: Path) -> Engine:
    return Engine(
        SystemStore.open(str(store)), select_device("cpu"), progress_bars=False, log=lambda _: None
    )


def introduce(store: Path, task: str, dataset: DatasetConfig, seed: int = 0) -> None:
    """One real task iteration (no verification: the trainer's own tests cover it)."""
    engine(store).introduce(replace(config(store, task, dataset), seed=seed), verify=False)


def trainer_logits(store: Path, task: str, images: np.ndarray) -> np.ndarray:
    """The task's logits from the trainer's own pool and PathModel (the reference)."""
    _, manifests, pool = engine(store).load()
    model = pool.model(EvoPath.from_dict(manifests[task]["path"]))
    return logits_of(model, torch.from_numpy(images)).numpy()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Http:
    """Plain HTTP answers: (status, headers, body)."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Served:
    """A running `mutask serve` process."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def hostport(self) -> str:
        return self.url.removeprefix("http://")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Http:
        req = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req) as resp:
                return Http(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            return Http(err.code, dict(err.headers), err.read())

    def get(self, path: str) -> Http:
        return self.request("GET", path)

    def post(self, path: str, doc: Any) -> Http:
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return self.request("POST", path, data, {"Content-Type": "application/json"})

    def infer_json(self, task: str, images: np.ndarray) -> np.ndarray:
        """Logits over plain JSON (the curl way)."""
        doc = {
            "inputs": [
                {
                    "name": "images",
                    "datatype": "FP32",
                    "shape": list(images.shape),
                    "data": images.reshape(-1).tolist(),
                }
            ],
            "outputs": [{"name": "logits"}],
        }
        r = self.post(f"/v2/models/{task}/infer", doc)
        assert r.status == 200, r.body
        out = r.json()["outputs"][0]
        return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])

    def alive(self) -> bool:
        return self.proc.poll() is None and self.get("/v2/health/live").status == 200


def start_server(store_or_models: list[str], workdir: Path, *extra: str) -> Served:
    """Start `mutask serve` and wait until it is ready (pytest-timeout bounds the wait)."""
    port = free_port()
    log = workdir / f"serve-{port}.log"
    args = [MUTASK, "serve", *store_or_models, "--port", str(port), "--threads", "1", *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    served = Served(f"http://127.0.0.1:{port}", proc, log)
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"mutask serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if served.get("/v2/health/ready").status == 200:
                return served
        except (urllib.error.URLError, ConnectionError):
            pass
        proc_wait(proc, 0.1)


def proc_wait(proc: subprocess.Popen[bytes], seconds: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(seconds)


def stop_server(served: Served) -> None:
    served.proc.terminate()
    try:
        served.proc.wait(30)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait()


def sample_images(n: int, seed: int = 0) -> np.ndarray:
    """FP32 [n, 3, S, S] images in [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen) * 2 - 1).numpy()

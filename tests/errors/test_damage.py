"""Damaged stores: the damage is named (object and what is wrong), isolated to the task it
hits, and never a traceback. `show` lists it, `evaluate` and `verify` exit 1 naming it, GC
deletes nothing it cannot account for, introductions of other tasks go on, and a revisit of
a damaged task is refused before anything is written. Also: leftovers of killed writers (temp
files, lock files, stale leases) are cleaned by the next run or by GC."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from errors_testutil import TINY_FLAGS, cli, error_line, snapshot

from mutask.contract import ExitCode

Copy = Callable[[Path], Path]


def manifest_path(store: Path, task: str) -> Path:
    return store / "tasks" / task / "manifest.json"


def manifest(store: Path, task: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(manifest_path(store, task).read_text())
    return doc


def own_blob(store: Path, task: str) -> Path:
    """A blob of a component ``task`` created itself (used by no other task here)."""
    m = manifest(store, task)
    cid = m["created"][0]
    return store / "blobs" / f"{m['components'][cid]['blob']}.safetensors"


def introduce(store: Path, task: str, *flags: str) -> tuple[int, str, str]:
    return cli(["introduce", "--store", str(store), "--task", task, *TINY_FLAGS, *flags])


def no_traceback(*texts: str) -> None:
    assert all("Traceback" not in t for t in texts)


@pytest.fixture
def garbage_low(grown: Path, copy_of: Copy) -> Path:
    store = copy_of(grown)
    manifest_path(store, "low").write_bytes(b'{"task": "low", "iteration": ')
    return store


def test_a_garbage_manifest_is_shown_as_damaged(garbage_low: Path) -> None:
    code, out, err = cli(["show", "--store", str(garbage_low)])
    assert code == ExitCode.OK, err
    assert "digits" in out and "task low: DAMAGED" in out
    assert "tasks/low/manifest.json: unreadable manifest" in out
    code, out, _ = cli(["show", "--store", str(garbage_low), "--json"])
    shown = json.loads(out)
    assert {r["task"] for r in shown["tasks"]} == {"__root__", "digits"}
    assert "unreadable manifest" in shown["damaged"]["low"]


def test_evaluate_and_verify_go_on_and_exit_1_naming_the_damage(garbage_low: Path) -> None:
    code, out, err = cli(["evaluate", "--store", str(garbage_low), "--device", "cpu"])
    assert code == ExitCode.FAILED
    assert "digits" in out and "test accuracy" in out
    assert "low" in out and "DAMAGED" in out and "tasks/low/manifest.json" in out
    code, out, err = cli(["verify", "--store", str(garbage_low), "--device", "cpu"])
    assert code == ExitCode.FAILED, out + err
    lines = {ln.split()[0]: ln for ln in out.splitlines()}
    assert " ok " in lines["digits"] and " ok " in lines["__root__"]
    assert "DAMAGED" in lines["low"] and "tasks/low/manifest.json" in lines["low"]
    no_traceback(out, err)


def test_gc_deletes_no_blob_while_a_manifest_is_unreadable(garbage_low: Path) -> None:
    blobs = snapshot(garbage_low / "blobs")
    code, out, err = cli(["gc", "--store", str(garbage_low), "--grace-seconds", "0"])
    assert code == ExitCode.BAD_INPUT
    assert "tasks/low/manifest.json" in error_line(err) and "no blob deleted" in err
    assert snapshot(garbage_low / "blobs") == blobs
    no_traceback(out, err)


def test_other_tasks_are_introduced_but_the_damaged_one_is_not_revisited(
    garbage_low: Path,
) -> None:
    code, out, err = introduce(garbage_low, "newt", "--transform", "rot90")
    assert code == ExitCode.OK, err
    assert "warning: task low: DAMAGED" in err
    assert manifest(garbage_low, "newt")["iteration"] == 0
    before = snapshot(garbage_low)
    code, out, err = introduce(garbage_low, "low", "--labels", "0,1,2,3,4")
    assert code == ExitCode.BAD_INPUT
    assert "task low is damaged" in error_line(err) and "tasks/low/manifest.json" in err
    assert snapshot(garbage_low) == before
    no_traceback(out, err)


def test_a_missing_root_manifest_fails_verify_and_blocks_introductions(
    grown: Path, copy_of: Copy
) -> None:
    store = copy_of(grown)
    manifest_path(store, "__root__").unlink()
    code, out, err = cli(["verify", "--store", str(store), "--device", "cpu"])
    assert code == ExitCode.FAILED
    assert "__root__" in out and "MISSING" in out and "tasks/__root__/manifest.json" in out
    code, out, err = cli(["show", "--store", str(store)])
    assert code == ExitCode.OK and "digits" in out and "MISSING" in out, err
    before = snapshot(store)
    code, out, err = introduce(store, "newt", "--bootstrap-root")
    assert code == ExitCode.BAD_INPUT
    assert "tasks/__root__/manifest.json is missing" in error_line(err)
    assert snapshot(store) == before
    no_traceback(out, err)


def test_an_edited_task_field_is_damage_not_a_new_task(grown: Path, copy_of: Copy) -> None:
    store = copy_of(grown)
    doc = manifest(store, "low")
    doc["task"] = "other"
    manifest_path(store, "low").write_text(json.dumps(doc))
    code, out, err = cli(["verify", "--store", str(store), "--device", "cpu"])
    assert code == ExitCode.FAILED
    assert "other" not in out.split()  # not reported under the new name
    assert "low" in out and "task field says 'other'" in out
    no_traceback(out, err)


def test_an_edited_component_entry_is_damage(grown: Path, copy_of: Copy) -> None:
    store = copy_of(grown)
    doc = manifest(store, "low")
    root_cid = next(c for c, e in doc["components"].items() if e["created_by"] == "__root__")
    doc["components"][root_cid]["param_hash"] = "0" * 64
    manifest_path(store, "low").write_text(json.dumps(doc))
    code, out, _ = cli(["verify", "--store", str(store), "--device", "cpu"])
    assert code == ExitCode.FAILED
    assert f"component {root_cid} differs from its creator __root__'s manifest" in out


def test_a_deleted_blob_damages_only_its_tasks(grown: Path, copy_of: Copy) -> None:
    store = copy_of(grown)
    blob = own_blob(store, "low")
    blob.unlink()
    code, out, err = cli(["verify", "--store", str(store), "--device", "cpu"])
    assert code == ExitCode.FAILED
    assert f"blobs/{blob.name}: missing" in out and " ok " in out
    code, out, err = introduce(store, "newt", "--transform", "rot90")  # was: NotFound traceback
    assert code == ExitCode.OK, err
    assert "task low: DAMAGED" in err
    code, out, err = cli(["evaluate", "--store", str(store), "--device", "cpu", "low", "digits"])
    assert code == ExitCode.FAILED and "digits" in out and "low" in out and "DAMAGED" in out
    no_traceback(out, err)


def test_a_changed_blob_is_found_when_read(grown: Path, copy_of: Copy) -> None:
    store = copy_of(grown)
    blob = own_blob(store, "low")
    blob.write_bytes(blob.read_bytes()[:-8] + b"\0" * 8)
    code, out, err = cli(["verify", "--store", str(store), "--device", "cpu", "low"])
    assert code == ExitCode.FAILED
    assert f"blobs/{blob.name}: content hash mismatch" in out
    code, out, err = cli(["export", "low", "--store", str(store), "--out", str(store / "x")])
    assert code == ExitCode.BAD_INPUT and "content hash mismatch" in error_line(err)
    no_traceback(out, err)


def test_a_garbage_resume_state_is_named_and_set_aside(grown: Path, copy_of: Copy) -> None:
    store = copy_of(grown)
    (store / "tasks" / "newt").mkdir()
    (store / "tasks" / "newt" / "resume.json").write_bytes(b"\x00garbage{")
    code, out, err = introduce(store, "newt", "--transform", "rot90")
    assert code == ExitCode.OK, err
    assert "tasks/newt/resume.json: unreadable resume state" in out + err
    assert (store / "tasks" / "newt" / "resume.damaged.json").read_bytes() == b"\x00garbage{"
    assert not (store / "tasks" / "newt" / "resume.json").exists()
    assert manifest(store, "newt")["iteration"] == 0


def _age(path: Path, seconds: float) -> None:
    st = path.stat()
    os.utime(path, (st.st_atime - seconds, st.st_mtime - seconds))


def test_leftovers_of_killed_writers_are_cleaned(grown: Path, copy_of: Copy) -> None:
    store = copy_of(grown)
    assert not list(store.rglob("*.lock")), "lock files pile up"
    blob = own_blob(store, "low")
    old_temp = store / "blobs" / f".{blob.name}.abc123.tmp"
    old_temp.write_bytes(b"half a blob")
    _age(old_temp, 700)
    young_temp = store / "blobs" / f".{blob.name}.def456.tmp"
    young_temp.write_bytes(b"being written")
    stale_lock = store / "tasks" / "low" / ".manifest.json.lock"
    stale_lock.write_bytes(b"")
    code, _, err = introduce(store, "newt", "--transform", "rot90")  # the next run sweeps
    assert code == ExitCode.OK, err
    assert not old_temp.exists() and young_temp.exists()
    assert list(store.rglob("*.lock")) == [stale_lock]  # another task's folder: GC's job
    lease = store / "tasks" / "newt" / "lease.json"
    assert json.loads(lease.read_text())["released"]
    _age(lease, 3600)
    _age(young_temp, 120)
    code, out, err = cli(["gc", "--store", str(store), "--grace-seconds", "0"])
    assert code == ExitCode.OK, err
    assert not young_temp.exists() and not stale_lock.exists() and not lease.exists()
    assert "2 leftover file(s), 1 stale lease(s)" in out
    code, _, err = cli(["verify", "--store", str(store), "--device", "cpu"])
    assert code == ExitCode.OK, err

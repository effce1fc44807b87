"""Which published tasks of a store are damaged, and why: one scan, damage kept per task.

A manifest is healthy when it is a readable JSON object, names the task whose folder holds
it, has every field a reader needs with the right types, a path whose components it lists,
component entries whose parameter counts fit the system's shape, the system's shape, entries
that agree with the creating task's manifest, and blobs that exist. Anything else marks that
task (only that task) damaged, so `show`, `evaluate`, `verify` and introductions of other
tasks go on without it. A task whose manifest is gone while other manifests list components
it created is reported as missing. Blob *contents* are checked where they are read (hash on
every read, tensor shapes on load).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mutask.contract import ROOT_TASK
from mutask.trainer.evolution import Component, Path, ViTShape
from mutask.trainer.store.layout import BLOBS, MANIFEST, TASKS, blob_key, task_key, task_of
from mutask.trainer.store.objects import NotFound, ObjectStore, StoreDamaged

SHA256 = re.compile(r"^[0-9a-f]{64}$")
SHAPE_FIELDS = ("hidden", "depth", "heads", "mlp", "patch", "image_size")


@dataclass(frozen=True)
class Damage:
    """One problem of one task: the object (key under the store) and what is wrong."""

    task: str
    key: str
    why: str

    def where(self, uri: str) -> str:
        return f"{uri}/{self.key}: {self.why}"


@dataclass
class StoreScan:
    """A store's manifests sorted into healthy and damaged (see the module doc).

    ``documents``: every manifest that parsed as a JSON object, damaged or not (what GC must
    keep alive); ``unreadable``: tasks whose manifest did not parse (GC cannot know what
    they reference); ``missing``: task -> the tasks whose manifests use components it
    created although its own manifest is gone.
    """

    uri: str
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    damaged: dict[str, list[Damage]] = field(default_factory=dict)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    unreadable: set[str] = field(default_factory=set)
    missing: dict[str, list[str]] = field(default_factory=dict)

    def mark(self, damage: Damage) -> None:
        self.damaged.setdefault(damage.task, []).append(damage)
        self.manifests.pop(damage.task, None)

    def problems(self, task: str) -> str:
        """The task's problems as one line."""
        return "; ".join(d.where(self.uri) for d in self.damaged.get(task, []))

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.missing

    def summary(self) -> list[str]:
        """One line per damaged or missing task."""
        lines = [f"task {t}: DAMAGED: {self.problems(t)}" for t in sorted(self.damaged)]
        lines += [
            f"task {t}: MISSING: {self.uri}/{manifest_key(t)} is gone but "
            f"{', '.join(sorted(users))} use components it created"
            for t, users in sorted(self.missing.items())
        ]
        return lines


def manifest_key(task: str) -> str:
    return task_key(task, MANIFEST)


def parse_manifest(uri: str, key: str, data: bytes) -> dict[str, Any]:
    """A manifest's JSON object; StoreDamaged naming the object if it is not one."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreDamaged(f"{uri}/{key}: unreadable manifest (not JSON: {err})") from err
    if not isinstance(doc, dict):
        raise StoreDamaged(f"{uri}/{key}: unreadable manifest (not a JSON object)")
    return doc


def scan(objects: ObjectStore, *, check_blobs: bool = True) -> StoreScan:
    """Read every manifest once and sort them (see the module doc)."""
    out = StoreScan(objects.uri)
    tasks: list[str] = []
    for info in objects.list(TASKS):
        task = task_of(info.key, MANIFEST)
        if task is not None:
            tasks.append(task)
    for task in sorted(tasks):
        key = manifest_key(task)
        try:
            data, _ = objects.read(key)
        except NotFound:
            continue  # deleted since the listing
        try:
            doc = parse_manifest(objects.uri, key, data)
        except StoreDamaged as err:
            out.unreadable.add(task)
            out.mark(Damage(task, key, str(err).split(": ", 1)[-1]))
            continue
        out.documents[task] = doc
        why = manifest_problem(task, doc)
        if why:
            out.mark(Damage(task, key, why))
        else:
            out.manifests[task] = doc
    _check_shapes(out)
    _check_agreement(out)
    if check_blobs:
        _check_blobs(out, objects)
    return out


def manifest_problem(task: str, doc: Mapping[str, Any]) -> str | None:
    """What is wrong with one manifest on its own, or None."""
    if doc.get("task") != task:
        return f"its task field says {doc.get('task')!r}, its folder says {task!r}"
    for name, kind in (("iteration", int), ("num_classes", int), ("format", int)):
        if not isinstance(doc.get(name), kind) or isinstance(doc.get(name), bool):
            return f"field {name!r} is {doc.get(name)!r}, not an integer"
    if doc["iteration"] < 0 or doc["num_classes"] < 0:
        return "negative iteration or num_classes"
    shape = doc.get("shape")
    if not isinstance(shape, dict) or any(not isinstance(shape.get(f), int) for f in SHAPE_FIELDS):
        return f"field 'shape' is {shape!r}, not a ViT shape"
    try:
        vit = ViTShape(**shape)
        path = Path.from_dict(doc["path"])
        entries = doc["components"]
        if not isinstance(entries, dict):
            return "field 'components' is not an object"
        comps = {cid: Component.from_dict(e) for cid, e in entries.items()}
    except (KeyError, TypeError, ValueError) as err:
        return f"malformed ({type(err).__name__}: {err})"
    if path.task != task:
        return f"its path belongs to task {path.task!r}"
    for cid in path.component_ids:
        if cid not in comps:
            return f"path {path.id} uses component {cid} that it does not list"
    for cid, entry in entries.items():
        comp = comps[cid]
        if comp.id != cid:
            return f"component {cid} is listed as {comp.id}"
        for name in ("blob", "param_hash"):
            if not SHA256.match(str(entry.get(name))):
                return f"component {cid}: {name} {entry.get(name)!r} is not a SHA-256"
        if not isinstance(entry.get("created_by"), str):
            return f"component {cid}: no created_by"
        try:
            expected = vit.component_params(
                comp.name, num_classes=comp.num_classes, adapter_dim=comp.adapter_dim
            )
        except (KeyError, ValueError) as err:
            return f"component {cid}: unknown kind {comp.name!r} ({err})"
        if expected != comp.num_params:
            return f"component {cid}: {comp.num_params} params, its shape has {expected}"
    created = doc.get("created", [])
    if not isinstance(created, list) or any(
        entries.get(c, {}).get("created_by") != task for c in created if c in entries
    ):
        return "field 'created' disagrees with the components' created_by"
    return None


def _check_shapes(out: StoreScan) -> None:
    """Every manifest must have the root's shape (the most common one when the root is gone)."""
    shapes = {t: json.dumps(m["shape"], sort_keys=True) for t, m in out.manifests.items()}
    if not shapes:
        return
    root = shapes.get(ROOT_TASK) or Counter(shapes.values()).most_common(1)[0][0]
    for task, shape in shapes.items():
        if shape != root:
            out.mark(Damage(task, manifest_key(task), f"its model shape {shape} is not {root}"))


def _check_agreement(out: StoreScan) -> None:
    """A component listed by several manifests must have the creator's blob and hash; a
    task whose manifest is gone but whose components others use is ``missing``."""
    creators: dict[str, dict[str, Any]] = {}
    for task, m in out.manifests.items():
        for cid, e in m["components"].items():
            if e["created_by"] == task:
                creators[cid] = e
    for task, m in list(out.manifests.items()):
        for cid, e in m["components"].items():
            owner = e["created_by"]
            if owner == task:
                continue
            if owner not in out.documents:
                out.missing.setdefault(owner, [])
                if task not in out.missing[owner]:
                    out.missing[owner].append(task)
            ref = creators.get(cid)
            if ref is not None and (ref["blob"], ref["param_hash"]) != (
                e["blob"],
                e["param_hash"],
            ):
                out.mark(
                    Damage(
                        task,
                        manifest_key(task),
                        f"component {cid} differs from its creator {owner}'s manifest "
                        "(blob or param hash edited)",
                    )
                )
                break


def _check_blobs(out: StoreScan, objects: ObjectStore) -> None:
    present = {info.key for info in objects.list(BLOBS)}
    for task, m in list(out.manifests.items()):
        for cid, e in m["components"].items():
            key = blob_key(str(e["blob"]))
            if key not in present:
                out.mark(Damage(task, key, f"missing (component {cid} of task {task})"))
                break


def require_healthy(found: StoreScan, task: str) -> dict[str, Any]:
    """The task's manifest, or StoreDamaged naming what is wrong with it."""
    if task in found.damaged:
        raise StoreDamaged(f"task {task} is damaged: {found.problems(task)}")
    return found.manifests[task]

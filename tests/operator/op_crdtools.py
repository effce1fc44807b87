"""Offline checks of custom resources against a CRD: its openAPIV3Schema (jsonschema, strict
about unknown fields as ``kubectl --validate=strict`` is) and its ``x-kubernetes-validations``
CEL rules (cel-python), including transition rules with ``oldSelf``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy
import jsonschema


def version_schema(crd: dict[str, Any], version: str = "v1alpha1") -> dict[str, Any]:
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema: dict[str, Any] = v["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(version)


def to_jsonschema(node: Any) -> Any:
    """OpenAPI v3 (Kubernetes flavour) -> JSON Schema draft 2020-12."""
    if isinstance(node, list):
        return [to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: to_jsonschema(v)
        for k, v in node.items()
        if not k.startswith("x-kubernetes-") and k not in ("default", "format")
    }
    if node.get("x-kubernetes-list-type") == "set":  # the apiserver refuses duplicates
        out["uniqueItems"] = True
    if node.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("exclusiveMaximum") is True:
        out["exclusiveMaximum"] = out.pop("maximum")
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def schema_errors(crd: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    schema = to_jsonschema(version_schema(crd))
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(obj)
    ]


@dataclass(frozen=True)
class Rule:
    path: tuple[str, ...]
    rule: str
    message: str
    field_path: str | None


def rules(schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[Rule]:
    for r in schema.get("x-kubernetes-validations") or []:
        yield Rule(path, r["rule"], r.get("message", r["rule"]), r.get("fieldPath"))
    for name, sub in (schema.get("properties") or {}).items():
        yield from rules(sub, (*path, name))


def _at(obj: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return False, None
        obj = obj[key]
    return True, obj


_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def _program(expr: str) -> Any:
    if expr not in _PROGRAMS:
        _PROGRAMS[expr] = _ENV.program(_ENV.compile(expr))
    return _PROGRAMS[expr]


def cel_errors(
    crd: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None
) -> list[str]:
    """Messages of the CEL rules ``obj`` violates (transition rules only when ``old`` is given)."""
    failures: list[str] = []
    for r in rules(version_schema(crd)):
        present, value = _at(obj, r.path)
        if not present:
            continue
        activation: dict[str, Any] = {"self": celpy.json_to_cel(value)}
        if "oldSelf" in r.rule:
            old_present, old_value = _at(old, r.path) if old is not None else (False, None)
            if not old_present:
                continue
            activation["oldSelf"] = celpy.json_to_cel(old_value)
        if not bool(_program(r.rule).evaluate(activation)):
            failures.append(r.message)
    return failures


def all_errors(
    crd: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None
) -> list[str]:
    return schema_errors(crd, obj) + cel_errors(crd, obj, old)

"""Argument schemas: what the model is told a tool takes, and the check that what it sent fits.

Arguments that do not fit are refused before anything runs and go back to the model as an error.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dict: "object",
    list: "array",
    tuple: "array",
}


def _annotation_schema(annotation: Any) -> dict[str, Any]:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _annotation_schema(members[0])
        return {"anyOf": [_annotation_schema(m) or {} for m in members]}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(annotation))}
    base = origin or annotation
    if base in (list, tuple):
        args = typing.get_args(annotation)
        schema: dict[str, Any] = {"type": "array"}
        if args and base is list:
            item = _annotation_schema(args[0])
            if item:
                schema["items"] = item
        return schema
    json_type = _JSON_TYPES.get(base)
    return {"type": json_type} if json_type else {}


def schema_from_signature(fn: Callable[..., Any]) -> dict[str, Any]:
    """A JSON Schema for the keyword arguments of ``fn``, from its signature and type hints."""
    try:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
    except (TypeError, ValueError, NameError):
        return {"type": "object", "properties": {}, "additionalProperties": True}
    properties: dict[str, Any] = {}
    required: list[str] = []
    extra = False
    for name, param in sig.parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            extra = True
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        properties[name] = _annotation_schema(hints.get(name, param.annotation))
        if param.default is inspect.Parameter.empty:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": extra}
    if required:
        schema["required"] = required
    return schema


def _fits(value: Any, schema: Mapping[str, Any]) -> bool:
    if "anyOf" in schema:
        return any(_fits(value, s) for s in schema["anyOf"])
    if "enum" in schema and value not in schema["enum"]:
        return False
    kind = schema.get("type")
    if kind is None:
        return True
    if isinstance(kind, list):
        return any(_fits(value, {**schema, "type": k}) for k in kind)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        if not isinstance(value, list):
            return False
        items = schema.get("items")
        return items is None or all(_fits(v, items) for v in value)
    if kind == "null":
        return value is None
    return True


def argument_problems(args: Any, schema: Mapping[str, Any]) -> list[str]:
    """Every way ``args`` does not fit ``schema`` (top-level properties), or an empty list."""
    if not isinstance(args, dict):
        return [f"arguments must be a JSON object, got {type(args).__name__}"]
    problems = []
    properties = schema.get("properties") or {}
    for name in schema.get("required") or ():
        if name not in args:
            problems.append(f"missing required argument {name!r}")
    if schema.get("additionalProperties") is False:
        for name in args:
            if name not in properties:
                problems.append(f"unknown argument {name!r} (expected: {', '.join(properties) or 'none'})")
    for name, value in args.items():
        sub = properties.get(name)
        if sub and not _fits(value, sub):
            want = sub.get("type") or "one of the allowed values"
            if "enum" in sub and value not in sub["enum"]:
                want = "one of " + ", ".join(map(repr, sub["enum"]))
            problems.append(f"argument {name!r} should be {want}, got {type(value).__name__} {value!r}"[:200])
    return problems

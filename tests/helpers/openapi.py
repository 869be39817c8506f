"""Checks a JSON value against the subset of JSON Schema that /openapi.json uses
(type, const, required, properties, items, oneOf, $ref) — small enough to read, so
the test of the OpenAPI document does not trust a library's idea of it."""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def check(value: Any, schema: dict[str, Any], doc: dict[str, Any], where: str = "$") -> None:
    """Raises AssertionError naming the first place `value` breaks `schema`."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        check(value, doc["components"]["schemas"][name], doc, where)
        return
    if "oneOf" in schema:
        errors = []
        for option in schema["oneOf"]:
            try:
                check(value, option, doc, where)
            except AssertionError as e:
                errors.append(str(e))
        assert len(errors) == len(schema["oneOf"]) - 1, f"{where}: oneOf: {errors}"
        return
    if "const" in schema:
        assert value == schema["const"], f"{where}: {value!r} != {schema['const']!r}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(
            isinstance(value, _TYPES[t])
            and not (t in ("integer", "number") and isinstance(value, bool))
            for t in types
        )
        assert ok, f"{where}: {value!r} is not {types}"
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            assert key in value, f"{where}: missing {key!r}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                check(value[key], sub, doc, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check(item, schema["items"], doc, f"{where}[{i}]")


def response_schema(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """The JSON schema the document gives for one response."""
    op = doc["paths"][path][method.lower()]
    resp = op["responses"][str(status)]
    schema = resp["content"]["application/json"]["schema"]
    assert isinstance(schema, dict)
    return schema

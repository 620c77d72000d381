"""Pipeline configuration: JSON-schema validation with defaults and messages naming the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from gpvae.errors import InputError

#: The configuration schema, shipped with the package (gpvae/schema/config.schema.yaml).
DEFAULT_SCHEMA = Path(__file__).resolve().parent / "schema" / "config.schema.yaml"


def _with_defaults(validator_class: type) -> type:
    """Extend a jsonschema validator so that ``default`` values are filled in (jsonschema FAQ)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # noqa: ANN001
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft7Validator)


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(err: jsonschema.ValidationError, source: str) -> str:
    key = _key(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        names = ", ".join(f"{key}.{e}" if err.absolute_path else e for e in extra)
        return (f"{source}: unknown key {names}; allowed keys here: {', '.join(allowed)}. "
                "Fix: correct the spelling or remove the key.")
    if err.validator == "type":
        return (f"{source}: key '{key}' must be of type {err.validator_value}, got "
                f"{type(err.instance).__name__} ({err.instance!r}). Fix: change its value.")
    if err.validator == "required":
        return f"{source}: {err.message} (in '{key}'). Fix: add the key."
    if err.validator in ("oneOf", "anyOf") and "description" in err.schema:
        return (f"{source}: key '{key}' is {err.instance!r}; expected "
                f"{err.schema['description']}. Fix: change its value.")
    return f"{source}: key '{key}': {err.message}. Fix: change its value."


def validate_config(cfg: dict, schema_path: str | Path = DEFAULT_SCHEMA,
                    source: str = "config") -> dict:
    """Validate ``cfg`` against the schema, fill defaults in place and return it.

    Raises :class:`InputError` listing every problem, each naming the key and the fix.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = "\n  - ".join(_describe(e, source) for e in errors)
        raise InputError(f"invalid configuration:\n  - {lines}", file=source)
    return cfg


def load_config(path: str | Path, schema_path: str | Path = DEFAULT_SCHEMA) -> dict:
    """Read a YAML config file, validate it and fill defaults."""
    path = Path(path)
    if not path.exists():
        raise InputError("config file not found", file=path, fix="pass an existing YAML file")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", file=path, fix="fix the YAML syntax") from exc
    return validate_config(cfg, schema_path, source=str(path))

"""Pipeline configuration: JSON-schema validation with defaults and messages naming the key."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from gpvae.errors import InputError

#: The schema shipped with the workflow (workflow/schemas/config.schema.yaml).
DEFAULT_SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


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


def _describe(err: jsonschema.ValidationError, source: str) -> InputError:
    """One schema error as the project's error: what, the key (field), the fix."""
    key = _key(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        names = ", ".join(f"{key}.{e}" if err.absolute_path else e for e in extra)
        return InputError(f"unknown key {names}; allowed keys here: {', '.join(allowed)}",
                          file=source, field=names,
                          fix="correct the spelling or remove the key")
    if err.validator == "type":
        what = (f"key '{key}' must be of type {err.validator_value}, got "
                f"{type(err.instance).__name__} ({err.instance!r})")
        fix = "change its value"
    elif err.validator == "required":
        what, fix = f"{err.message} (in '{key}')", "add the key"
    elif err.validator in ("oneOf", "anyOf") and "description" in err.schema:
        what = f"key '{key}' is {err.instance!r}; expected {err.schema['description']}"
        fix = "change its value"
    else:
        what, fix = f"key '{key}': {err.message}", "change its value"
    return InputError(what, file=source, field=key, fix=fix)


def _dates_as_text(node: object) -> None:
    """YAML reads an unquoted 2022-01-01 as a date: keep dates as the ISO text the schema
    expects (in place)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, value in list(items):
        if isinstance(value, datetime.date):
            node[key] = value.isoformat()
        else:
            _dates_as_text(value)


def _coerce_text(cfg: dict, validator: jsonschema.protocols.Validator) -> None:
    """Values given as text where the schema wants a number, boolean or null (Snakemake's
    ``--config key='{a: 0.5}'`` passes nested values as text) are read as YAML scalars."""
    for _ in range(100):  # each pass fixes every error found; nested ones may follow
        changed = False
        for err in validator.iter_errors(cfg):
            if err.validator != "type" or not isinstance(err.instance, str) \
                    or not err.absolute_path:
                continue
            try:
                value = yaml.safe_load(err.instance)
            except yaml.YAMLError:
                continue
            types = err.validator_value if isinstance(err.validator_value, list) \
                else [err.validator_value]
            if not isinstance(value, str) and any(validator.is_type(value, t) for t in types):
                *parents, last = err.absolute_path
                node = cfg
                for key in parents:
                    node = node[key]
                node[last] = value
                changed = True
        if not changed:
            return


def validate_config(cfg: dict, schema_path: str | Path = DEFAULT_SCHEMA,
                    source: str = "config") -> dict:
    """Validate ``cfg`` against the schema, fill defaults in place and return it.

    Raises :class:`InputError` listing every problem, each naming the key and the fix.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    _dates_as_text(cfg)
    validator = _Validator(schema)
    _coerce_text(cfg, validator)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        if len(errors) == 1:
            raise _describe(errors[0], source)
        lines = "\n  - ".join(str(_describe(e, source)) for e in errors)
        raise InputError(f"{len(errors)} problems in the configuration:\n  - {lines}")
    return cfg


def read_yaml(path: str | Path) -> dict:
    """A YAML config file as a mapping; InputError naming the file, and the line and column
    of a syntax error."""
    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found", file=path,
                         fix="pass an existing YAML file (--configfile PATH), or run from the "
                             "folder holding config/config.yaml")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "syntax"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"not valid YAML at {where}: {problem}", file=path, field=where,
                         fix="fix the YAML there (indent with spaces, no tabs; 'key: value'; "
                             "close brackets and quotes)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the config file ({exc})", file=path,
                         fix="pass a readable YAML text file") from exc
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise InputError(f"the top level is a {type(cfg).__name__}, not a mapping of keys",
                         file=path, field="<top level>",
                         fix="write the config as 'key: value' lines (see config/config.yaml)")
    return cfg


def load_config(path: str | Path, schema_path: str | Path = DEFAULT_SCHEMA) -> dict:
    """Read a YAML config file, validate it and fill defaults."""
    return validate_config(read_yaml(path), schema_path, source=str(path))

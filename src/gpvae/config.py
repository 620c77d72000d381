"""Pipeline configuration: JSON-schema validation with defaults and messages naming the key.

The schema (``gpvae/schema/config.schema.yaml``, shipped with the package) is the single
source of every default: the pipeline validates the whole config against it, and library
calls fill a section's defaults from it (:func:`defaults`, :func:`validate_section`), e.g.
``build_model({"type": "gpvae"}, ...)`` gets the schema's model defaults.
"""

from __future__ import annotations

import copy
import datetime
import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from gpvae.errors import InputError

#: The configuration schema, shipped with the package (gpvae/schema/config.schema.yaml).
DEFAULT_SCHEMA = Path(__file__).resolve().parent / "schema" / "config.schema.yaml"


#: Model settings a model that adds sensors to a trained one (``init_from``) may change;
#: every other one must be the trained model's (gpvae.train.add_sensor).
INIT_FROM_FREE_KEYS = ("sensors", "bands", "train", "description", "init_from")

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


@functools.cache
def _schema(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _key(path: Any, prefix: str = "") -> str:
    key = ".".join(str(p) for p in path)
    return ".".join(p for p in (prefix, key) if p) or "<top level>"


def _describe(err: jsonschema.ValidationError, source: str, prefix: str = "") -> InputError:
    """One schema error as the project's error: what, the key (field), the fix."""
    key = _key(err.absolute_path, prefix)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        names = ", ".join(f"{key}.{e}" if (err.absolute_path or prefix) else e for e in extra)
        return InputError(f"unknown key {names}; allowed keys here: {', '.join(allowed)}",
                          file=source, field=names,
                          fix="correct the spelling or remove the key")
    if err.validator == "type":
        what = (f"key '{key}' must be of type {err.validator_value}, got "
                f"{type(err.instance).__name__} ({err.instance!r})")
        fix = "change its value"
    elif err.validator == "required":
        what, fix = f"{err.message} (in '{key}')", "add the key"
    elif "propertyNames" in err.schema_path:
        what = (f"name {err.instance!r} under '{key}' is not allowed: names are letters, "
                f"digits, '_', '.' and '-' (they name folders and workflow jobs)")
        fix = f"rename {err.instance!r}, e.g. {re.sub(r'[^A-Za-z0-9_.-]+', '_', err.instance)!r}"
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


def _validate(instance: Any, schema: dict, source: str, prefix: str = "", *,
              coerce: bool = False) -> None:
    """Validate (filling defaults in place); one error is raised as it is (file, field, fix),
    several as one InputError listing each. ``coerce``: text values read as YAML scalars
    where the schema wants another type (:func:`_coerce_text`)."""
    validator = _Validator(schema)
    if coerce:
        _coerce_text(instance, validator)
    errors = sorted(validator.iter_errors(instance),
                    key=lambda e: list(map(str, e.absolute_path)))
    if len(errors) == 1:
        raise _describe(errors[0], source, prefix)
    if errors:
        lines = "\n  - ".join(str(_describe(e, source, prefix)) for e in errors)
        raise InputError(f"{len(errors)} problems in the configuration:\n  - {lines}")


def validate_config(cfg: dict, schema_path: str | Path = DEFAULT_SCHEMA,
                    source: str = "config") -> dict:
    """Validate ``cfg`` against the schema, fill defaults in place and return it.

    Raises :class:`InputError` listing every problem, each naming the key and the fix.
    """
    _dates_as_text(cfg)
    _validate(cfg, _schema(str(schema_path)), source, coerce=True)
    return cfg


def _subschema(ref: str, schema_path: str | Path = DEFAULT_SCHEMA) -> dict:
    """A schema for the part ``ref`` (a JSON pointer such as ``#/definitions/model``) of the
    config schema, with the schema's definitions so that its ``$ref``s resolve."""
    root = _schema(str(schema_path))
    return {"$schema": root.get("$schema"), "definitions": root.get("definitions", {}),
            "$ref": ref}


def validate_section(instance: Any, ref: str, *, field: str = "", source: object = "config",
                     schema_path: str | Path = DEFAULT_SCHEMA) -> Any:
    """Validate one part of a config (e.g. a model, ``ref="#/definitions/model"``) against the
    schema, fill its defaults in place and return it; errors name ``field.<key>``."""
    _validate(instance, _subschema(ref, schema_path), str(source), field)
    return instance


def _node(root: dict, pointer: str) -> dict:
    """The part of ``root`` at a JSON pointer such as ``#/definitions/model``."""
    node = root
    for part in pointer.lstrip("#/").split("/"):
        node = node[part]
    return node


def defaults(ref: str, schema_path: str | Path = DEFAULT_SCHEMA) -> dict:
    """The schema's defaults of an object part, nested objects included, e.g.
    ``defaults("#/definitions/model")["train"]["epochs"]``."""
    root = _schema(str(schema_path))

    def resolve(sub: dict) -> dict:
        while "$ref" in sub:
            sub = _node(root, sub["$ref"])
        return sub

    def fill(sub: dict) -> dict:
        out = {}
        for name, prop in resolve(sub).get("properties", {}).items():
            prop = resolve(prop)
            if "default" in prop:
                value = copy.deepcopy(prop["default"])
                if isinstance(value, dict) and "properties" in prop:
                    value = {**fill(prop), **value}
                out[name] = value
        return out

    return fill(_node(root, ref))


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (YAML keeps the last)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    twice = sorted({str(k) for k in keys if keys.count(k) > 1})
    if twice:
        raise InputError(f"key {twice[0]!r} is given twice in one mapping (line "
                         f"{node.start_mark.line + 1}; e.g. two sensors declaring the same "
                         "name)", field=twice[0], fix="keep one of them")
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def read_yaml(path: str | Path) -> dict:
    """A YAML config file as a mapping; InputError naming the file, and the line and column
    of a syntax error, or the key given twice in one mapping (YAML would keep the last)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found", file=path,
                         fix="pass an existing YAML file (--configfile PATH), or run from the "
                             "folder holding config/config.yaml")
    try:
        cfg = yaml.load(path.read_text(), Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "syntax"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"not valid YAML at {where}: {problem}", file=path, field=where,
                         fix="fix the YAML there (indent with spaces, no tabs; 'key: value'; "
                             "close brackets and quotes)") from exc
    except InputError as exc:
        raise InputError(str(exc.args[0]).split(" | ")[0], file=path, field=exc.field,
                         fix=exc.fix) from exc
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

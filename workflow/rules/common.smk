# Config validation (schema + defaults) and helpers shared by the rules.
import json
import shlex
import sys
from pathlib import Path

SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from gpvae.config import validate_config  # noqa: E402

validate_config(
    config, Path(workflow.basedir) / "src" / "gpvae" / "schema" / "config.schema.yaml"
)

R = config["results"]
TILES = config["tiles"]
ENV = "../../envs/gpvae.yaml"
# The library's CLI (`python -m gpvae.cli`), importable whether or not the package is
# installed in the job's environment.
# Machines with only `python3` (no `python` command) get a fallback.
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    "command -v python >/dev/null || python() {{ python3 \"$@\"; }}; "
)

INPUTS = config["inputs"]
TABLE = INPUTS.get("table")  # a sample table replaces extract/mask/sample
if not TABLE and not (INPUTS.get("S2") and INPUTS.get("parcels") and TILES):
    raise ValueError(
        "config: give either inputs.table, or tiles + inputs.S2 + inputs.parcels. "
        "Fix: see config/examples/."
    )
S1_CFG = INPUTS.get("S1") or {}
SENSORS = ["S2"] + [f"S1_{o}" for o in S1_CFG.get("orbits", [])]
if TABLE:
    SENSORS = list(TABLE["columns"].get("bands", {}) or ["S2"])
    TILES = []
MODELS = list(config["models"])
RESERVED = {"linear", "gp", "raw_linear"}
if RESERVED & set(MODELS):
    raise ValueError(
        f"config: models.{sorted(RESERVED & set(MODELS))[0]}: this name is reserved for a "
        "baseline. Fix: rename the model."
    )
BASELINES = config["gapfill"]["baselines"]
FEATURES = MODELS + ["raw_linear"]  # embedding sets the classifiers compare
PREDICT = config["predict"]
MAP_MODELS = (
    [m for m in MODELS if m in (PREDICT["models"] or MODELS)]
    if PREDICT["enabled"] and not TABLE
    else []
)


def tile_path(template, tile):
    """Fill '{tile}' in a path template of the config."""
    return template.replace("{tile}", tile)


def sensor_config(sensor):
    """The inputs section of one sensor (S2, or S1 for S1_ASC / S1_DES)."""
    return INPUTS["S2"] if sensor == "S2" else S1_CFG


def sensor_input(wildcards):
    """Products folder or cube file of one tile and sensor (none for a STAC API URL)."""
    path = tile_path(sensor_config(wildcards.sensor)["path"], wildcards.tile)
    return [] if path.startswith(("http://", "https://")) else path


def extract_args(wildcards):
    """Extract options for one sensor (format, reader settings, AOI, dates)."""
    cfg = sensor_config(wildcards.sensor)
    e = config["extract"]
    opts = [f"--format {cfg['format']}"] + extract_options()
    keys = (
        "product",
        "collection",
        "crs",
        "bands",
        "time_var",
        "mask",
        "scale",
        "offset",
        "sar_units",
    )
    reader = {k: cfg[k] for k in keys if cfg.get(k) is not None}
    if cfg["format"] != "generic":
        reader = {
            k: v for k, v in reader.items() if k in ("product", "collection", "crs")
        }
    if reader:
        opts.append("--options " + shlex.quote(json.dumps(reader, sort_keys=True)))
    if wildcards.sensor == "S2" and e["bands"]:
        opts.append("--bands " + " ".join(e["bands"]))
    return " ".join(opts)


def cube(tile, sensor):
    return f"{R}/cubes/{tile}/{sensor}.nc"


def mask(tile, sensor):
    return f"{R}/masks/{tile}/{sensor}.nc"


def ref_args():
    """Reference-date options of the embedding and map stages."""
    e = config["embed"]
    return (
        f"--ref-start {e['ref_start_day']} --ref-end {e['ref_end_day']} "
        f"--ref-step {e['ref_step_days']}"
    )


def model_sensors(model):
    """Sensors a model reads (all configured sensors when not set)."""
    return config["models"][model].get("sensors") or SENSORS


def tile_inputs(model, tile):
    """Cubes and masks of one tile for the sensors of one model."""
    sensors = [s for s in model_sensors(model) if s in SENSORS]
    return {
        "cubes": {s: cube(tile, s) for s in sensors},
        "masks": {s: mask(tile, s) for s in sensors},
    }


def metric_tables():
    """Every tidy metrics table and cost source the merge reads."""
    tables = [f"{R}/metrics/classification_{f}.csv" for f in FEATURES]
    tables += [f"{R}/metrics/gapfill_{m}.csv" for m in MODELS + BASELINES]
    tables += [f"{R}/models/{m}/metrics.csv" for m in MODELS]
    tables += [f"{R}/maps/{m}/{t}_cost.json" for m in MAP_MODELS for t in TILES]
    return tables


def table_spec():
    """Table settings and split settings, as the table stage reads them."""
    return {"table": TABLE, "sample": config["sample"]}


def all_targets():
    targets = [f"{R}/samples/pixels.nc"]
    targets += [f"{R}/masks/{t}/{s}_cloud_cover.csv" for t in TILES for s in SENSORS]
    targets += [f"{R}/models/{m}/best.pt" for m in MODELS]
    if MODELS:
        targets += [f"{R}/embeddings/{f}.nc" for f in FEATURES]
        targets += [f"{R}/maps/{m}/{t}.nc" for m in MAP_MODELS for t in TILES]
        targets += [f"{R}/metrics/all.csv"]
    return targets


def extract_options():
    e = config["extract"]
    opts = []
    if e["aoi"]:
        opts.append("--aoi " + " ".join(str(v) for v in e["aoi"]))
    if e["start"]:
        opts.append(f"--start {e['start']}")
    if e["end"]:
        opts.append(f"--end {e['end']}")
    return opts


def sample_spec():
    """Everything the sample stage reads, as one JSON document (its inputs and settings)."""
    inp = config["inputs"]
    tiles = {}
    for t in TILES:
        tiles[t] = {
            "cubes": {s: cube(t, s) for s in SENSORS},
            "masks": {s: mask(t, s) for s in SENSORS},
            "parcels": tile_path(inp["parcels"]["path"], t),
            "truth": tile_path(inp["truth"], t) if inp["truth"] else None,
            "region": inp["regions"].get(t, t),
        }
    return {
        "inputs": tiles,
        "class_field": inp["parcels"]["class_field"],
        "id_field": inp["parcels"]["id_field"],
        "sample": config["sample"],
    }

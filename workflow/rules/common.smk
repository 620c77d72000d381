# Config validation (schema + defaults) and helpers shared by the rules.
import json
import sys
from pathlib import Path

SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from gpvae.config import validate_config  # noqa: E402

validate_config(
    config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
)

R = config["results"]
TILES = config["tiles"]
ENV = "../../envs/gpvae.yaml"
# The library's CLI (`python -m gpvae.cli`), importable whether or not the package is
# installed in the job's environment.
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)

S1_CFG = config["inputs"].get("S1") or {}
SENSORS = ["S2"] + [f"S1_{o}" for o in S1_CFG.get("orbits", [])]
MODELS = list(config["models"])


wildcard_constraints:
    tile="|".join(TILES),
    sensor="S2|S1_ASC|S1_DES",
    model="|".join(MODELS) if MODELS else "NO_MODEL",


def tile_path(template, tile):
    """Fill '{tile}' in a path template of the config."""
    return template.replace("{tile}", tile)


def sensor_input(wildcards):
    """Folder of products for one tile and sensor."""
    if wildcards.sensor == "S2":
        return tile_path(config["inputs"]["S2"]["path"], wildcards.tile)
    return tile_path(S1_CFG["path"], wildcards.tile)


def cube(tile, sensor):
    return f"{R}/cubes/{tile}/{sensor}.nc"


def mask(tile, sensor):
    return f"{R}/masks/{tile}/{sensor}.nc"


def all_targets():
    targets = [f"{R}/samples/pixels.nc"]
    targets += [f"{R}/masks/{t}/{s}_cloud_cover.csv" for t in TILES for s in SENSORS]
    targets += [f"{R}/models/{m}/best.pt" for m in MODELS]
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

# Config loading and validation (schema, start-up checks) and helpers shared by the rules.
import json
import re
import shlex
import sys
from pathlib import Path

SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from gpvae.config import read_yaml, validate_config  # noqa: E402
from gpvae.errors import InputError  # noqa: E402
from gpvae.io.sensors import sensor_registry  # noqa: E402
from gpvae.joblogs import failed_logs_from_snakemake_log, failure_report  # noqa: E402
from gpvae.validate import input_sensors, startup_checks  # noqa: E402


def stop(err):
    """Stop at start-up with the project's message (file, field, fix), no traceback."""
    sys.exit(f"gpvae: error: {err}")


def config_source():
    """Where the config came from: its files and the command line's --config."""
    files = [str(f) for f in workflow.configfiles] or ["(no config file)"]
    extra = " + --config on the command line" if workflow.config_settings.config else ""
    return ", ".join(files) + extra


DEFAULT_CONFIG = "config/config.yaml"
# Without --configfile: the demo config, with --config KEY=VALUE applied on top of it.
if not workflow.overwrite_configfiles:
    try:
        read_yaml(DEFAULT_CONFIG)  # a clear message (file, line) for a broken default
    except InputError as err:
        stop(err)

    configfile: DEFAULT_CONFIG


try:
    # A key given twice (e.g. two sensors of one name) stops here.
    for _configfile in workflow.configfiles:
        read_yaml(_configfile)
    # The package's schema (gpvae/schema/config.schema.yaml): the single source of defaults.
    validate_config(config, source=config_source())
    REGISTRY = sensor_registry(config["sensors"])  # built-ins + the config's `sensors:`
except InputError as err:
    stop(err)

R = config["results"]
# Threads of the compute jobs in plain --cores runs (the profiles use set-threads).
THREADS = config["threads"]
TILES = config["tiles"]
ENV = "../../envs/gpvae.yaml"
# The library's CLI (`python -m gpvae.cli`), importable whether or not the package is
# installed in the job's environment.
# Machines with only `python3` (no `python` command) get a fallback.
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    'command -v python >/dev/null || python() {{ python3 "$@"; }}; '
)

INPUTS = config["inputs"]
TABLE = INPUTS.get("table")  # a sample table replaces extract/mask/sample
S1_CFG = INPUTS.get("S1") or {}
#: Sensors of the inputs (gpvae.validate.input_sensors): a table's, else every sensor input
#: in config order (`S1` stands for S1_<orbit> per orbit direction).
SENSORS = input_sensors(config)
if TABLE:
    TILES = []
MODELS = list(config["models"])
# Start-up checks of the config against the inputs' metadata and the sensor registry
# (gpvae.validate): an unknown sensor or band, a wrong field or fraction stops here.
try:
    for warning in startup_checks(
        config, sensors=SENSORS, tiles=TILES, source=config_source(), registry=REGISTRY
    ):
        if workflow.is_main_process:
            print(f"gpvae: warning: {warning}", file=sys.stderr)
except InputError as err:
    stop(err)
SENSOR_DEFS = {s: REGISTRY[s] for s in SENSORS}
BASELINES = config["gapfill"]["baselines"]
#: Classification needs labels: a table without a label column has none.
CLASSIFY = not (TABLE and not TABLE["columns"].get("label"))
#: The sensor gap filling hides and predicts (and the tile maps gap-fill, and the raw_linear
#: reference interpolates): gapfill.sensor / embed.raw_sensor, else the first optical or
#: index sensor. With none (SAR only) there is no gap filling and no raw reference.
GAPFILL_SENSOR = config["gapfill"]["sensor"] or next(
    (s for s, d in SENSOR_DEFS.items() if d.kind != "sar"), None
)
RAW_SENSOR = config["embed"]["raw_sensor"] or GAPFILL_SENSOR
if GAPFILL_SENSOR is None:
    BASELINES = []
FEATURES = MODELS + (["raw_linear"] if RAW_SENSOR else [])  # the classifiers compare
#: Held-out-domain protocols run for these models (each retrained per held-out value).
TRANSFER_KINDS = [
    k for k in ("region", "year") if k in config["downstream"]["protocols"]
]
_transfer = config["downstream"]["transfer_models"]
TRANSFER_MODELS = [
    m
    for m in MODELS
    if (_transfer is None or m in _transfer)
    and not config["models"][m].get("init_from")
]


def init_checkpoint(model):
    """The trained model a model adds sensors to (models.<name>.init_from), as a list."""
    base = config["models"][model].get("init_from")
    return [f"{R}/models/{base}/best.pt"] if base else []


PREDICT = config["predict"]
MAP_MODELS = (
    [m for m in MODELS if m in (PREDICT["models"] or MODELS)]
    if PREDICT["enabled"] and not TABLE and CLASSIFY
    else []
)


def tile_path(template, tile):
    """Fill '{tile}' in a path template of the config."""
    return template.replace("{tile}", tile)


def sensor_config(sensor):
    """The inputs section of one sensor (`inputs.<sensor>`, or S1 for S1_ASC / S1_DES)."""
    return INPUTS.get(sensor) or S1_CFG


#: Formats of coarse sensors warped onto the tile's grid (gpvae.io.readers.WARPED), and
#: the sensor whose cube is that grid: the finest of the others (S2 first).
WARPED = ("landsat", "appeears")
GRID_SENSOR = min(
    [s for s in SENSORS if (INPUTS.get(s) or S1_CFG).get("format") not in WARPED],
    key=lambda s: (s != "S2", REGISTRY[s].resolution_m),
    default=None,
)


def sensor_input(wildcards):
    """Products folder or cube file of one tile and sensor (none for a STAC API URL); a
    coarse sensor's also needs the tile's grid cube."""
    path = tile_path(sensor_config(wildcards.sensor)["path"], wildcards.tile)
    grid = grid_cube(wildcards)
    return ([] if path.startswith(("http://", "https://")) else [path]) + grid


def grid_cube(wildcards):
    """The reference cube a warped (coarse) sensor is aligned with, as a list (or [])."""
    fmt = sensor_config(wildcards.sensor).get("format")
    return [cube(wildcards.tile, GRID_SENSOR)] if fmt in WARPED and GRID_SENSOR else []


def extract_args(wildcards, dates=None):
    """Extract options for one sensor (format, reader settings, AOI, dates: extract.start /
    end, or ``dates`` = (start, end))."""
    cfg = sensor_config(wildcards.sensor)
    e = config["extract"]
    opts = [f"--format {cfg['format']}"] + extract_options(dates)
    if config["sensors"]:
        opts.append("--sensors " + shlex.quote(json.dumps(config["sensors"])))
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
    reader = {
        k: cfg[k] for k in keys + ("reliability_invalid",) if cfg.get(k) is not None
    }
    if cfg["format"] != "generic":
        kept = {"landsat": ("mask",), "appeears": ("reliability_invalid",)}
        reader = {
            k: v
            for k, v in reader.items()
            if k in ("product", "collection", "crs") + kept.get(cfg["format"], ())
        }
    opts += [f"--grid {shlex.quote(g)}" for g in grid_cube(wildcards)]
    if reader:
        opts.append("--options " + shlex.quote(json.dumps(reader, sort_keys=True)))
    bands = e["bands"]
    if isinstance(bands, list):  # a list is the S2 bands
        bands = {"S2": bands}
    if bands and bands.get(wildcards.sensor):
        opts.append("--bands " + " ".join(bands[wildcards.sensor]))
    return " ".join(opts)


def cube(tile, sensor):
    return f"{R}/cubes/{tile}/{sensor}.nc"


def mask(tile, sensor):
    return f"{R}/masks/{tile}/{sensor}.nc"


def ref_args():
    """Reference-date options of the embedding and map stages (no --ref-end: the data's
    span)."""
    e = config["embed"]
    end = "" if e["ref_end_day"] is None else f" --ref-end {e['ref_end_day']}"
    return f"--ref-start {e['ref_start_day']}{end} --ref-step {e['ref_step_days']}"


def sensor_arg(name):
    """``--sensor <name>`` when a sensor is configured, else nothing (the stage's default)."""
    return f"--sensor {name}" if name else ""


def model_sensors(model):
    """Sensors a model reads (all configured sensors when not set)."""
    return config["models"][model].get("sensors") or SENSORS


def tile_inputs(model, tile):
    """Cubes and masks of one tile for the sensors of one model."""
    sensors = [s for s in model_sensors(model) if s in SENSORS]
    return {
        "cubes": {s: cube(tile, s) for s in sensors},
        "masks": {s: mask(tile, s) for s in sensors},
        "region": INPUTS["regions"].get(tile, tile),
    }


#: New acquisitions (workflow/rules/update.smk): models whose tile products are updated.
UPDATE = config["update"]
UPDATE_MODELS = [m for m in UPDATE["models"] if m in MAP_MODELS]


def update_sensors(model):
    """Sensors of a model that have new products (update.sensors, default all)."""
    wanted = UPDATE["sensors"]
    return [
        s
        for s in model_sensors(model)
        if s in SENSORS and (wanted is None or s in wanted)
    ]


def new_inputs(model, tile):
    """Cubes and masks of one tile's new acquisitions for the sensors of one model."""
    sensors = update_sensors(model)
    return {
        "cubes": {s: f"{R}/update/cubes/{tile}/{s}.nc" for s in sensors},
        "masks": {s: f"{R}/update/masks/{tile}/{s}.nc" for s in sensors},
    }


def metric_tables():
    """Every tidy metrics table and cost source the merge reads."""
    tables = [f"{R}/metrics/classification_{f}.csv" for f in FEATURES if CLASSIFY]
    tables += [
        f"{R}/metrics/gapfill_{m}.csv" for m in MODELS + BASELINES if GAPFILL_SENSOR
    ]
    tables += [f"{R}/models/{m}/metrics.csv" for m in MODELS]
    tables += [f"{R}/maps/{m}/{t}_cost.json" for m in MAP_MODELS for t in TILES]
    return tables


def table_spec():
    """Table settings and split settings, as the table stage reads them."""
    return {"table": TABLE, "sample": config["sample"], "sensors": config["sensors"]}


def transfer_inputs(wildcards):
    """Held-out-domain embedding folders the downstream stage of a feature set reads."""
    if wildcards.features not in TRANSFER_MODELS:
        return {}
    return {k: f"{R}/embeddings/{wildcards.features}~{k}" for k in TRANSFER_KINDS}


def transfer_args(wildcards, input):
    """--transfer-<kind> options of the downstream stage."""
    return " ".join(
        f"--transfer-{k} {shlex.quote(str(input[k]))}"
        for k in TRANSFER_KINDS
        if k in input.keys()
    )


def all_targets():
    targets = [f"{R}/samples/pixels.nc"]
    targets += [f"{R}/masks/{t}/{s}_cloud_cover.csv" for t in TILES for s in SENSORS]
    targets += [f"{R}/models/{m}/best.pt" for m in MODELS]
    if MODELS:
        targets += [f"{R}/embeddings/{f}.nc" for f in FEATURES]
        targets += [f"{R}/maps/{m}/{t}.nc" for m in MAP_MODELS for t in TILES]
        targets += [f"{R}/update/{m}/{t}.nc" for m in UPDATE_MODELS for t in TILES]
        targets += [f"{R}/metrics/all.csv"]
    return targets


def extract_options(dates=None):
    e = config["extract"]
    start, end = dates or (e["start"], e["end"])
    opts = []
    if e["aoi"]:
        opts.append("--aoi " + " ".join(str(v) for v in e["aoi"]))
    if start:
        opts.append(f"--start {start}")
    if end:
        opts.append(f"--end {end}")
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


# --- report figures (the report_figure rule, workflow/rules/report.smk) ---
REPORT_CFG = config["report"]
RP = f"{R}/report"
#: Embedding sets (contracts 4) and gap-filling predictors (contracts 5) the report compares.
EMBEDDING_SETS = (["raw_linear"] if RAW_SENSOR else []) + MODELS
GAPFILL_SETS = MODELS + BASELINES
METRICS_ALL = f"{R}/metrics/all.csv"
PIXELS = f"{R}/samples/pixels.nc"
HIDDEN = f"{R}/gapfill/hidden.nc"
#: The sensor whose cube the maps show: the gap-filled one.
MAP_SENSOR = GAPFILL_SENSOR or (SENSORS[0] if SENSORS else "")


def report_figure(figure, category, subcategory, inputs, args="", **params):
    """One report output: ``gpvae figures <figure>`` with ``inputs`` (option -> files; the
    option is the key with - for _) and extra ``args``, shown under category/subcategory.
    """
    return {
        "figure": figure,
        "category": category,
        "subcategory": subcategory,
        "inputs": inputs,
        "args": args,
        **params,
    }


def report_figures():
    """Every report output under results/report/ (the figure families of the report)."""
    figures = {
        "data/timeline.png": report_figure(
            "timeline",
            "Data",
            "Acquisitions",
            {
                "cloud_cover": [
                    f"{R}/masks/{t}/{s}_cloud_cover.csv" for t in TILES for s in SENSORS
                ]
            },
        ),
        "data/classes.png": report_figure(
            "classes", "Data", "Samples", {"pixels": PIXELS}
        ),
        "training/curves.png": report_figure(
            "training",
            "Training",
            "Curves",
            {"training": [f"{R}/models/{m}/metrics.csv" for m in MODELS]},
        ),
        "cost/cost.html": report_figure(
            "cost",
            "Cost",
            "Per model",
            {
                "training": [f"{R}/models/{m}/metrics.csv" for m in MODELS],
                "metrics": METRICS_ALL,
                "tile_costs": [
                    f"{R}/maps/{m}/{t}_cost.json" for m in MAP_MODELS for t in TILES
                ],
            },
        ),
    }
    gapfill = {"pixels": PIXELS, "hidden": HIDDEN}
    gapfill["gapfill"] = [f"{R}/gapfill/{m}.nc" for m in GAPFILL_SETS]
    band = REPORT_CFG["example_band"]
    if GAPFILL_SENSOR:
        figures["gapfill/examples.png"] = report_figure(
            "examples",
            "Gap filling",
            "Examples",
            gapfill,
            f"--examples {REPORT_CFG['example_pixels']} --seed {REPORT_CFG['seed']}"
            + (f" --band {band}" if band else ""),
            band=band or "",
        )
        figures["gapfill/calibration.png"] = report_figure(
            "calibration", "Gap filling", "Calibration", gapfill
        )
        figures["gapfill/metrics.png"] = report_figure(
            "gapfill_metrics", "Gap filling", "Metrics", {"metrics": METRICS_ALL}
        )
    if CLASSIFY:
        figures["classification/embeddings.png"] = report_figure(
            "embeddings",
            "Classification",
            "Embeddings",
            {
                "pixels": PIXELS,
                "embeddings": [f"{R}/embeddings/{m}.nc" for m in EMBEDDING_SETS],
            },
            f"--max-points {REPORT_CFG['embedding_points']} --seed {REPORT_CFG['seed']}",
        )
        figures["classification/metrics.png"] = report_figure(
            "classification_metrics",
            "Classification",
            "Metrics",
            {"metrics": METRICS_ALL},
        )
        figures["classification/label_efficiency.png"] = report_figure(
            "label_efficiency",
            "Classification",
            "Label efficiency",
            {"metrics": METRICS_ALL},
        )
        figures["classification/confusion.png"] = report_figure(
            "confusion",
            "Classification",
            "Confusion matrices",
            {"confusion": [f"{R}/metrics/confusion_{m}.csv" for m in EMBEDDING_SETS]},
            f"--protocol {REPORT_CFG['confusion_protocol']}",
        )
    for t in TILES if MAP_MODELS else []:
        figures[f"maps/{t}.png"] = report_figure(
            "maps",
            "Maps",
            t,
            {
                "cube": cube(t, MAP_SENSOR),
                "mask": mask(t, MAP_SENSOR),
                "maps": [f"{R}/maps/{m}/{t}.nc" for m in MAP_MODELS],
            },
            f"--tile {t}",
            tile=t,
        )
    return figures


REPORT_FIGURES = report_figures()


def figure_args(wildcards):
    """The `gpvae figures` options of one output: its inputs and extra arguments."""
    spec = REPORT_FIGURES[wildcards.path]
    opts = []
    for key, files in spec["inputs"].items():
        files = [files] if isinstance(files, str) else files
        opts.append(
            f"--{key.replace('_', '-')} " + " ".join(shlex.quote(f) for f in files)
        )
    return " ".join(opts + [spec["args"]])


def model_check(model):
    """Options that make a stage refuse a checkpoint not trained for this model's settings."""
    cfg = json.dumps(config["models"][model], sort_keys=True)
    return f"--model {model} --model-config {shlex.quote(cfg)}"


def job_name(job):
    """A job as `rule (wildcard=value, ...)`."""
    wildcards = ", ".join(f"{k}={v}" for k, v in dict(job.wildcards_dict).items())
    return f"{job.rule.name} ({wildcards})" if wildcards else job.rule.name


def report_failed_jobs(snakemake_log):
    """On failure: print each failed job's own error (its log's last message) on stderr."""
    jobs = getattr(getattr(workflow, "scheduler", None), "failed", None)
    failed = (
        [(job_name(job), [str(f) for f in job.log]) for job in jobs]
        if jobs
        else failed_logs_from_snakemake_log(snakemake_log)
    )
    text = failure_report(failed)
    if text:
        print(text, file=sys.stderr)

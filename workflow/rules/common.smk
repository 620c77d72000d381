# Config loading and validation (schema, start-up checks) and helpers shared by the rules.
import json
import shlex
import sys
from pathlib import Path

SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from gpvae.config import read_yaml, validate_config  # noqa: E402
from gpvae.errors import InputError  # noqa: E402
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
    validate_config(
        config,
        Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml",
        source=config_source(),
    )
except InputError as err:
    stop(err)

R = config["results"]
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
SENSORS = input_sensors(config)
if TABLE:
    TILES = []
MODELS = list(config["models"])
# Start-up checks of the config against the inputs' metadata (gpvae.validate).
try:
    for warning in startup_checks(
        config, sensors=SENSORS, tiles=TILES, source=config_source()
    ):
        if workflow.is_main_process:
            print(f"gpvae: warning: {warning}", file=sys.stderr)
except InputError as err:
    stop(err)
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

# Figures and tables of the HTML report (`snakemake --report results/report.html`): one rule
# for all of them, driven by REPORT_FIGURES (output -> `gpvae figures <figure>` call, inputs,
# report category); captions in workflow/report/figures.rst, what each shows in
# docs/report.md.
import re

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


rule report_figure:
    input:
        unpack(lambda w: REPORT_FIGURES[w.path]["inputs"]),
    output:
        report(
            f"{RP}/{{path}}",
            caption="../report/figures.rst",
            category=lambda w: REPORT_FIGURES[w.path]["category"],
            subcategory=lambda w: REPORT_FIGURES[w.path]["subcategory"],
        ),
    log:
        f"{R}/logs/report/{{path}}.log",
    wildcard_constraints:
        path="|".join(re.escape(p) for p in REPORT_FIGURES) or "NO_FIGURE",
    conda:
        ENV
    params:
        figure=lambda w: REPORT_FIGURES[w.path]["figure"],
        args=figure_args,
        band=lambda w: REPORT_FIGURES[w.path].get("band", ""),
        tile=lambda w: REPORT_FIGURES[w.path].get("tile", ""),
        sensor=GAPFILL_SENSOR or MAP_SENSOR,
    message:
        "Report: {params.figure} ({wildcards.path})"
    shell:
        "python -m gpvae.cli figures {params.figure} {params.args} --out {output:q} "
        "> {log} 2>&1"


#: Every report figure and table (`rule all` builds them when models are configured).
REPORT_TARGETS = [f"{RP}/{p}" for p in REPORT_FIGURES]

# Figures and tables of the HTML report (`snakemake --report results/report.html`):
# one rule per figure, captions in workflow/report/*.rst, what each shows in docs/report.md.
REPORT_CFG = config.get("report") or {}
RP = f"{R}/report"
#: Embedding sets (contracts 4) and gap-filling predictors (contracts 5) the report compares.
EMBEDDING_SETS = ["raw_linear"] + MODELS
GAPFILL_SETS = MODELS + BASELINES
METRICS_ALL = f"{R}/metrics/all.csv"
PIXELS = f"{R}/samples/pixels.nc"
HIDDEN = f"{R}/gapfill/hidden.nc"


rule report_timeline:
    input:
        [f"{R}/masks/{t}/{s}_cloud_cover.csv" for t in TILES for s in SENSORS],
    output:
        report(
            f"{RP}/data/timeline.png",
            caption="../report/timeline.rst",
            category="Data",
            subcategory="Acquisitions",
        ),
    log:
        f"{R}/logs/report/timeline.log",
    conda:
        ENV
    message:
        "Report: acquisition timeline per sensor and tile"
    shell:
        "python -m gpvae.cli figures timeline --cloud-cover {input:q} --out {output:q} > {log} 2>&1"


rule report_classes:
    input:
        PIXELS,
    output:
        report(
            f"{RP}/data/classes.png",
            caption="../report/classes.rst",
            category="Data",
            subcategory="Samples",
        ),
    log:
        f"{R}/logs/report/classes.log",
    conda:
        ENV
    message:
        "Report: class distribution and split"
    shell:
        "python -m gpvae.cli figures classes --pixels {input:q} --out {output:q} > {log} 2>&1"


rule report_training:
    input:
        [f"{R}/models/{m}/metrics.csv" for m in MODELS],
    output:
        report(
            f"{RP}/training/curves.png",
            caption="../report/training.rst",
            category="Training",
            subcategory="Curves",
        ),
    log:
        f"{R}/logs/report/training.log",
    conda:
        ENV
    message:
        "Report: training curves of {MODELS}"
    shell:
        "python -m gpvae.cli figures training --training {input:q} --out {output:q} > {log} 2>&1"


rule report_examples:
    input:
        pixels=PIXELS,
        hidden=HIDDEN,
        gapfill=[f"{R}/gapfill/{m}.nc" for m in GAPFILL_SETS],
    output:
        report(
            f"{RP}/gapfill/examples.png",
            caption="../report/examples.rst",
            category="Gap filling",
            subcategory="Examples",
        ),
    log:
        f"{R}/logs/report/examples.log",
    conda:
        ENV
    params:
        n=REPORT_CFG.get("example_pixels", 4),
        band=REPORT_CFG.get("example_band", "B08"),
        seed=REPORT_CFG.get("seed", 0),
    message:
        "Report: {params.n} example pixels with each model's reconstruction"
    shell:
        "python -m gpvae.cli figures examples --pixels {input.pixels:q} --hidden {input.hidden:q} "
        "--gapfill {input.gapfill:q} --examples {params.n} --band {params.band} "
        "--seed {params.seed} --out {output:q} > {log} 2>&1"


rule report_calibration:
    input:
        pixels=PIXELS,
        hidden=HIDDEN,
        gapfill=[f"{R}/gapfill/{m}.nc" for m in GAPFILL_SETS],
    output:
        report(
            f"{RP}/gapfill/calibration.png",
            caption="../report/calibration.rst",
            category="Gap filling",
            subcategory="Calibration",
        ),
    log:
        f"{R}/logs/report/calibration.log",
    conda:
        ENV
    message:
        "Report: calibration of the gap-filling intervals"
    shell:
        "python -m gpvae.cli figures calibration --pixels {input.pixels:q} --hidden {input.hidden:q} "
        "--gapfill {input.gapfill:q} --out {output:q} > {log} 2>&1"


rule report_gapfill_metrics:
    input:
        METRICS_ALL,
    output:
        report(
            f"{RP}/gapfill/metrics.png",
            caption="../report/gapfill_metrics.rst",
            category="Gap filling",
            subcategory="Metrics",
        ),
    log:
        f"{R}/logs/report/gapfill_metrics.log",
    conda:
        ENV
    message:
        "Report: gap-filling metrics across models"
    shell:
        "python -m gpvae.cli figures gapfill_metrics --metrics {input:q} --out {output:q} > {log} 2>&1"


rule report_embeddings:
    input:
        pixels=PIXELS,
        embeddings=[f"{R}/embeddings/{m}.nc" for m in EMBEDDING_SETS],
    output:
        report(
            f"{RP}/classification/embeddings.png",
            caption="../report/embeddings.rst",
            category="Classification",
            subcategory="Embeddings",
        ),
    log:
        f"{R}/logs/report/embeddings.log",
    conda:
        ENV
    params:
        points=REPORT_CFG.get("embedding_points", 2000),
        seed=REPORT_CFG.get("seed", 0),
    message:
        "Report: 2-D projections of the embeddings"
    shell:
        "python -m gpvae.cli figures embeddings --pixels {input.pixels:q} --embeddings {input.embeddings:q} "
        "--max-points {params.points} --seed {params.seed} --out {output:q} > {log} 2>&1"


rule report_classification_metrics:
    input:
        METRICS_ALL,
    output:
        report(
            f"{RP}/classification/metrics.png",
            caption="../report/classification_metrics.rst",
            category="Classification",
            subcategory="Metrics",
        ),
    log:
        f"{R}/logs/report/classification_metrics.log",
    conda:
        ENV
    message:
        "Report: classification metrics across models and protocols"
    shell:
        "python -m gpvae.cli figures classification_metrics --metrics {input:q} --out {output:q} "
        "> {log} 2>&1"


rule report_label_efficiency:
    input:
        METRICS_ALL,
    output:
        report(
            f"{RP}/classification/label_efficiency.png",
            caption="../report/label_efficiency.rst",
            category="Classification",
            subcategory="Label efficiency",
        ),
    log:
        f"{R}/logs/report/label_efficiency.log",
    conda:
        ENV
    message:
        "Report: label-efficiency curves"
    shell:
        "python -m gpvae.cli figures label_efficiency --metrics {input:q} --out {output:q} > {log} 2>&1"


rule report_confusion:
    input:
        [f"{R}/metrics/confusion_{m}.csv" for m in EMBEDDING_SETS],
    output:
        report(
            f"{RP}/classification/confusion.png",
            caption="../report/confusion.rst",
            category="Classification",
            subcategory="Confusion matrices",
        ),
    log:
        f"{R}/logs/report/confusion.log",
    conda:
        ENV
    params:
        protocol=REPORT_CFG.get("confusion_protocol", "parcel"),
    message:
        "Report: confusion matrices (protocol {params.protocol})"
    shell:
        "python -m gpvae.cli figures confusion --confusion {input:q} --protocol {params.protocol} "
        "--out {output:q} > {log} 2>&1"


rule report_maps:
    input:
        cube=f"{R}/cubes/{{tile}}/S2.nc",
        mask=f"{R}/masks/{{tile}}/S2.nc",
        maps=[f"{R}/maps/{m}/{{tile}}.nc" for m in MODELS],
    output:
        report(
            f"{RP}/maps/{{tile}}.png",
            caption="../report/maps.rst",
            category="Maps",
            subcategory="{tile}",
        ),
    log:
        f"{R}/logs/report/maps_{{tile}}.log",
    conda:
        ENV
    message:
        "Report: maps of tile {wildcards.tile}"
    shell:
        "python -m gpvae.cli figures maps --cube {input.cube:q} --mask {input.mask:q} --maps {input.maps:q} "
        "--tile {wildcards.tile} --out {output:q} > {log} 2>&1"


rule report_cost:
    input:
        training=[f"{R}/models/{m}/metrics.csv" for m in MODELS],
        metrics=METRICS_ALL,
        tile_costs=[f"{R}/maps/{m}/{t}_cost.json" for m in MODELS for t in TILES],
    output:
        report(
            f"{RP}/cost/cost.html",
            caption="../report/cost.rst",
            category="Cost",
            subcategory="Per model",
        ),
    log:
        f"{R}/logs/report/cost.log",
    conda:
        ENV
    message:
        "Report: cost table (training time, inference speed, memory)"
    shell:
        "python -m gpvae.cli figures cost --training {input.training:q} --metrics {input.metrics:q} "
        "--tile-costs {input.tile_costs:q} --out {output:q} > {log} 2>&1"


#: Every report figure and table (the lead adds them to `rule all`).
REPORT_TARGETS = [
    f"{RP}/data/timeline.png",
    f"{RP}/data/classes.png",
    f"{RP}/training/curves.png",
    f"{RP}/gapfill/examples.png",
    f"{RP}/gapfill/calibration.png",
    f"{RP}/gapfill/metrics.png",
    f"{RP}/classification/embeddings.png",
    f"{RP}/classification/metrics.png",
    f"{RP}/classification/label_efficiency.png",
    f"{RP}/classification/confusion.png",
    *[f"{RP}/maps/{t}.png" for t in TILES],
    f"{RP}/cost/cost.html",
]

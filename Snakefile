# gpvae: GP-prior VAEs for Sentinel-1/2 time series. `snakemake --cores all` runs the demo.
from snakemake.utils import min_version

min_version("8.0")


# Config: config/config.yaml (the demo) unless --configfile is given; --config KEY=VALUE
# overrides either. Validated by schema and start-up checks (docs/validation.md).
include: "workflow/rules/common.smk"


wildcard_constraints:
    tile="|".join(TILES) if TILES else "NO_TILE",
    sensor="|".join(SENSORS) if SENSORS else "NO_SENSOR",
    model="|".join(MODELS) if MODELS else "NO_MODEL",
    features="|".join(FEATURES),
    baseline="|".join(BASELINES) if BASELINES else "NO_BASELINE",
    kind="region|year",


include: "workflow/rules/scene.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/mask.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/gapfill.smk"
include: "workflow/rules/downstream.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        all_targets() + (REPORT_TARGETS if MODELS else []),


onerror:
    # Each failed job's own error (file, field, fix) on the terminal, not only in its log.
    report_failed_jobs(log)

"""Names of the report's figures and tables, importable without matplotlib or torch (the CLI
lists them as choices; gpvae.report.make maps each figure name to its builder)."""

FIGURE_NAMES = ("timeline", "classes", "training", "examples", "calibration", "gapfill_metrics",
                "embeddings", "classification_metrics", "label_efficiency", "confusion", "maps")
#: Tables (written as HTML pages).
TABLES = ("cost",)

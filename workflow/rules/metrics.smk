# One tidy metrics table (all tasks, models, protocols, seeds) plus per-task summaries.


rule metrics:
    input:
        metric_tables(),
    output:
        f"{R}/metrics/all.csv",
    log:
        f"{R}/logs/metrics.log",
    conda:
        ENV
    params:
        summaries=lambda w, output: str(Path(output[0]).parent),
    message:
        "Merging all metrics into one tidy table"
    shell:
        "python -m gpvae.cli metrics --inputs {input:q} --out {output:q} "
        "--summary-dir {params.summaries:q} > {log} 2>&1"

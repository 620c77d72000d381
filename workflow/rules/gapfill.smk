# Gap filling: one hiding protocol for all, then every model and baseline predicts it.


rule hide:
    input:
        f"{R}/samples/pixels.nc",
    output:
        f"{R}/gapfill/hidden.nc",
    log:
        f"{R}/logs/gapfill/hidden.log",
    conda:
        ENV
    params:
        frac=config["gapfill"]["random_fraction"],
        gap=" ".join(str(g) for g in config["gapfill"]["gap_days"]),
        seed=config["gapfill"]["seed"],
        sensor=sensor_arg(GAPFILL_SENSOR),
        cap=(
            f"--max-samples {config['gapfill']['max_samples']}"
            if config["gapfill"]["max_samples"]
            else ""
        ),
    message:
        "Choosing the {GAPFILL_SENSOR} observations hidden from every model (gap-filling protocol)"
    shell:
        "python -m gpvae.cli hide --pixels {input:q} --out {output:q} "
        "--random-fraction {params.frac} --gap-days {params.gap} --seed {params.seed} "
        "{params.cap} {params.sensor} > {log} 2>&1"


rule gapfill:
    input:
        pixels=f"{R}/samples/pixels.nc",
        hidden=f"{R}/gapfill/hidden.nc",
        model=f"{R}/models/{{model}}/best.pt",
    output:
        pred=f"{R}/gapfill/{{model}}.nc",
        table=f"{R}/metrics/gapfill_{{model}}.csv",
    log:
        f"{R}/logs/gapfill/{{model}}.log",
    conda:
        ENV
    threads: THREADS
    resources:
        gpu=1,
    params:
        device=config["device"],
        check=lambda w: model_check(w.model),
    message:
        "Gap filling the hidden {GAPFILL_SENSOR} observations with model {wildcards.model}"
    shell:
        "OMP_NUM_THREADS={threads} python -m gpvae.cli gapfill --pixels {input.pixels:q} "
        "--hidden {input.hidden:q} --checkpoint {input.model:q} --out {output.pred:q} "
        "--table {output.table:q} --device {params.device} {params.check} > {log} 2>&1"


rule gapfill_baseline:
    input:
        pixels=f"{R}/samples/pixels.nc",
        hidden=f"{R}/gapfill/hidden.nc",
    output:
        pred=f"{R}/gapfill/{{baseline}}.nc",
        table=f"{R}/metrics/gapfill_{{baseline}}.csv",
    log:
        f"{R}/logs/gapfill/{{baseline}}.log",
    conda:
        ENV
    threads: THREADS
    params:
        device=config["device"],
    message:
        "Gap filling the hidden {GAPFILL_SENSOR} observations with the {wildcards.baseline} baseline"
    shell:
        "OMP_NUM_THREADS={threads} python -m gpvae.cli gapfill --pixels {input.pixels:q} "
        "--hidden {input.hidden:q} --baseline {wildcards.baseline} --out {output.pred:q} "
        "--table {output.table:q} --device {params.device} > {log} 2>&1"

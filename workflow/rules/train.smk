# One training job per model of the config (GPU when the profile provides one).


rule train:
    input:
        f"{R}/samples/pixels.nc",
    output:
        best=f"{R}/models/{{model}}/best.pt",
        metrics=f"{R}/models/{{model}}/metrics.csv",
    log:
        f"{R}/logs/train/{{model}}.log",
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
    params:
        cfg=lambda w: json.dumps(config["models"][w.model], sort_keys=True),
        outdir=lambda w: f"{R}/models/{w.model}",
        device=config["device"],
    message:
        "Training model {wildcards.model}"
    shell:
        "OMP_NUM_THREADS={threads} python -m gpvae.cli train --pixels {input:q} --model {wildcards.model} "
        "--model-config {params.cfg:q} --out {params.outdir} --device {params.device} "
        "> {log} 2>&1"

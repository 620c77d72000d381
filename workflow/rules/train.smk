# One training job per model of the config (GPU when the profile provides one).


rule train:
    input:
        pixels=f"{R}/samples/pixels.nc",
        init=lambda w: init_checkpoint(w.model),
    output:
        best=f"{R}/models/{{model}}/best.pt",
        metrics=f"{R}/models/{{model}}/metrics.csv",
    log:
        f"{R}/logs/train/{{model}}.log",
    conda:
        ENV
    threads: THREADS
    resources:
        gpu=1,
    params:
        cfg=lambda w: json.dumps(config["models"][w.model], sort_keys=True),
        outdir=lambda w: f"{R}/models/{w.model}",
        device=config["device"],
        init=lambda w, input: (
            f"--init-from {shlex.quote(str(input.init))}" if input.init else ""
        ),
    message:
        "Training model {wildcards.model}"
    shell:
        "OMP_NUM_THREADS={threads} python -m gpvae.cli train --pixels {input.pixels:q} --model {wildcards.model} "
        "--model-config {params.cfg:q} --out {params.outdir} --device {params.device} "
        "{params.init} > {log} 2>&1"

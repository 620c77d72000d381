# Embeddings at reference dates per model, and the raw-band reference features.


rule embed:
    input:
        pixels=f"{R}/samples/pixels.nc",
        model=f"{R}/models/{{model}}/best.pt",
    output:
        f"{R}/embeddings/{{model}}.nc",
    log:
        f"{R}/logs/embed/{{model}}.log",
    conda:
        ENV
    threads: THREADS
    resources:
        gpu=1,
    params:
        ref=ref_args(),
        device=config["device"],
        batch=config["embed"]["batch_size"],
        check=lambda w: model_check(w.model),
    message:
        "Embedding every sampled pixel with model {wildcards.model}"
    shell:
        "OMP_NUM_THREADS={threads} python -m gpvae.cli embed --pixels {input.pixels:q} "
        "--checkpoint {input.model:q} --out {output:q} {params.ref} "
        "--device {params.device} --batch-size {params.batch} {params.check} > {log} 2>&1"


rule embed_raw:
    input:
        f"{R}/samples/pixels.nc",
    output:
        f"{R}/embeddings/raw_linear.nc",
    log:
        f"{R}/logs/embed/raw_linear.log",
    conda:
        ENV
    params:
        ref=ref_args(),
        sensor=sensor_arg(RAW_SENSOR),
    message:
        "Reference features: raw {RAW_SENSOR} bands linearly gap-filled at the reference dates"
    shell:
        "python -m gpvae.cli embed --pixels {input:q} --out {output:q} {params.ref} "
        "{params.sensor} > {log} 2>&1"

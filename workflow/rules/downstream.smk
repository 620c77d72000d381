# Downstream classification from frozen embeddings (every model + the raw-band reference).


rule transfer:
    input:
        f"{R}/samples/pixels.nc",
    output:
        directory(f"{R}/embeddings/{{model}}~{{kind}}"),
    log:
        f"{R}/logs/transfer/{{model}}~{{kind}}.log",
    conda:
        ENV
    threads: THREADS
    resources:
        gpu=1,
    params:
        cfg=lambda w: json.dumps(config["models"][w.model], sort_keys=True),
        model_dir=lambda w: f"{R}/models/{w.model}/transfer",
        ref=ref_args(),
        device=config["device"],
        batch=config["embed"]["batch_size"],
    message:
        "Training {wildcards.model} once per held-out {wildcards.kind} and embedding with each"
    shell:
        "OMP_NUM_THREADS={threads} python -m gpvae.cli transfer --pixels {input:q} "
        "--model {wildcards.model} --model-config {params.cfg:q} --kind {wildcards.kind} "
        "--model-dir {params.model_dir:q} --out {output:q} {params.ref} "
        "--device {params.device} --batch-size {params.batch} > {log} 2>&1"


rule downstream:
    input:
        unpack(
            lambda w: {
                "embeddings": f"{R}/embeddings/{w.features}.nc",
                **transfer_inputs(w),
            }
        ),
    output:
        table=f"{R}/metrics/classification_{{features}}.csv",
        confusion=f"{R}/metrics/confusion_{{features}}.csv",
        classifier=f"{R}/downstream/{{features}}/classifier.joblib",
    log:
        f"{R}/logs/downstream/{{features}}.log",
    conda:
        ENV
    threads: THREADS
    params:
        classifiers=" ".join(config["downstream"]["classifiers"]),
        seeds=" ".join(str(s) for s in config["downstream"]["seeds"]),
        protocols=" ".join(config["downstream"]["protocols"]),
        fractions=" ".join(str(f) for f in config["downstream"]["label_fractions"]),
        transfer=transfer_args,
    message:
        "Classifying land cover from the {wildcards.features} embeddings"
    shell:
        "OMP_NUM_THREADS={threads} python -m gpvae.cli classify "
        "--embeddings {input.embeddings:q} {params.transfer} "
        "--out {output.table:q} --confusion {output.confusion:q} "
        "--classifier {output.classifier:q} --classifiers {params.classifiers} "
        "--seeds {params.seeds} --protocols {params.protocols} "
        "--label-fractions {params.fractions} > {log} 2>&1"

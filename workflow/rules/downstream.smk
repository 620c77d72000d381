# Downstream classification from frozen embeddings (every model + the raw-band reference).


rule downstream:
    input:
        f"{R}/embeddings/{{features}}.nc",
    output:
        table=f"{R}/metrics/classification_{{features}}.csv",
        confusion=f"{R}/metrics/confusion_{{features}}.csv",
        classifier=f"{R}/downstream/{{features}}/classifier.joblib",
    log:
        f"{R}/logs/downstream/{{features}}.log",
    conda:
        ENV
    threads: 2
    params:
        classifiers=" ".join(config["downstream"]["classifiers"]),
        seeds=" ".join(str(s) for s in config["downstream"]["seeds"]),
        protocols=" ".join(config["downstream"]["protocols"]),
        fractions=" ".join(str(f) for f in config["downstream"]["label_fractions"]),
    message:
        "Classifying land cover from the {wildcards.features} embeddings"
    shell:
        "OMP_NUM_THREADS={threads} python -m gpvae.cli classify --embeddings {input:q} "
        "--out {output.table:q} --confusion {output.confusion:q} "
        "--classifier {output.classifier:q} --classifiers {params.classifiers} "
        "--seeds {params.seeds} --protocols {params.protocols} "
        "--label-fractions {params.fractions} > {log} 2>&1"

# Tile products per model and tile: embedding maps, gap-filled bands with std, class map.


rule predict_tile:
    input:
        unpack(
            lambda w: {
                "cubes": list(tile_inputs(w.model, w.tile)["cubes"].values()),
                "masks": list(tile_inputs(w.model, w.tile)["masks"].values()),
            }
        ),
        model=f"{R}/models/{{model}}/best.pt",
        classifier=f"{R}/downstream/{{model}}/classifier.joblib",
    output:
        nc=f"{R}/maps/{{model}}/{{tile}}.nc",
        cost=f"{R}/maps/{{model}}/{{tile}}_cost.json",
        class_map=f"{R}/maps/{{model}}/{{tile}}_class_map.tif",
        embedding_rgb=f"{R}/maps/{{model}}/{{tile}}_embedding_rgb.tif",
    log:
        f"{R}/logs/predict/{{model}}_{{tile}}.log",
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
    params:
        inputs=lambda w: json.dumps(tile_inputs(w.model, w.tile), sort_keys=True),
        ref=ref_args(),
        year=f"--year {PREDICT['year']}" if PREDICT["year"] else "",
        chunk=PREDICT["chunk_px"],
        batch=PREDICT["batch_size"],
        samples=PREDICT["num_samples"],
        sensor=sensor_arg(config["gapfill"]["sensor"]),
        device=config["device"],
        check=lambda w: model_check(w.model),
    message:
        "Mapping tile {wildcards.tile} with model {wildcards.model}"
    shell:
        "OMP_NUM_THREADS={threads} python -m gpvae.cli predict-tile "
        "--inputs {params.inputs:q} --checkpoint {input.model:q} "
        "--classifier {input.classifier:q} --out {output.nc:q} {params.ref} {params.year} "
        "--chunk-px {params.chunk} --batch-size {params.batch} --num-samples {params.samples} "
        "--device {params.device} {params.sensor} {params.check} "
        "> {log} 2>&1"

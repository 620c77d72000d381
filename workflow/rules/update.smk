# New acquisitions without retraining: a tile's state, then its products updated from the
# products dated from update.start on only (docs/models.md, "New acquisitions").


use rule extract as extract_new with:
    output:
        f"{R}/update/cubes/{{tile}}/{{sensor}}.nc",
    log:
        f"{R}/logs/update/extract_{{tile}}_{{sensor}}.log",
    params:
        src=lambda w: tile_path(sensor_config(w.sensor)["path"], w.tile),
        opts=lambda w: extract_args(w, dates=(UPDATE["start"], UPDATE["end"])),
    message:
        "Extracting the new {wildcards.sensor} acquisitions of tile {wildcards.tile}"


use rule mask as mask_new with:
    input:
        f"{R}/update/cubes/{{tile}}/{{sensor}}.nc",
    output:
        mask=f"{R}/update/masks/{{tile}}/{{sensor}}.nc",
        table=f"{R}/update/masks/{{tile}}/{{sensor}}_cloud_cover.csv",
    log:
        f"{R}/logs/update/mask_{{tile}}_{{sensor}}.log",
    message:
        "Masking the new {wildcards.sensor} acquisitions of tile {wildcards.tile}"


rule tile_state:
    input:
        unpack(
            lambda w: {
                "cubes": list(tile_inputs(w.model, w.tile)["cubes"].values()),
                "masks": list(tile_inputs(w.model, w.tile)["masks"].values()),
            }
        ),
        model=f"{R}/models/{{model}}/best.pt",
    output:
        f"{R}/update/{{model}}/{{tile}}_base_state.nc",
    log:
        f"{R}/logs/update/state_{{model}}_{{tile}}.log",
    conda:
        ENV
    threads: THREADS
    resources:
        gpu=1,
    params:
        inputs=lambda w: json.dumps(tile_inputs(w.model, w.tile), sort_keys=True),
        ref=ref_args(),
        year=f"--year {PREDICT['year']}" if PREDICT["year"] else "",
        chunk=PREDICT["chunk_px"],
        device=config["device"],
        check=lambda w: model_check(w.model),
    message:
        "Filter state of tile {wildcards.tile} with model {wildcards.model}"
    shell:
        "OMP_NUM_THREADS={threads} python -m gpvae.cli tile-state "
        "--inputs {params.inputs:q} --checkpoint {input.model:q} --out {output:q} "
        "{params.ref} {params.year} --chunk-px {params.chunk} --device {params.device} "
        "{params.check} > {log} 2>&1"


rule update_tile:
    input:
        unpack(
            lambda w: {
                "cubes": list(new_inputs(w.model, w.tile)["cubes"].values()),
                "masks": list(new_inputs(w.model, w.tile)["masks"].values()),
            }
        ),
        state=f"{R}/update/{{model}}/{{tile}}_base_state.nc",
        model=f"{R}/models/{{model}}/best.pt",
        classifier=f"{R}/downstream/{{model}}/classifier.joblib",
    output:
        nc=f"{R}/update/{{model}}/{{tile}}.nc",
        state=f"{R}/update/{{model}}/{{tile}}_state.nc",
        cost=f"{R}/update/{{model}}/{{tile}}_cost.json",
    log:
        f"{R}/logs/update/update_{{model}}_{{tile}}.log",
    conda:
        ENV
    threads: THREADS
    resources:
        gpu=1,
    params:
        inputs=lambda w: json.dumps(new_inputs(w.model, w.tile), sort_keys=True),
        chunk=PREDICT["chunk_px"],
        samples=PREDICT["num_samples"],
        sensor=sensor_arg(config["gapfill"]["sensor"]),
        device=config["device"],
        check=lambda w: model_check(w.model),
    message:
        "Updating the products of tile {wildcards.tile} ({wildcards.model}) with the new "
        "acquisitions"
    shell:
        "OMP_NUM_THREADS={threads} python -m gpvae.cli update-tile --state {input.state:q} "
        "--inputs {params.inputs:q} --checkpoint {input.model:q} "
        "--classifier {input.classifier:q} --out {output.nc:q} --out-state {output.state:q} "
        "--chunk-px {params.chunk} --num-samples {params.samples} --device {params.device} "
        "{params.sensor} {params.check} > {log} 2>&1"

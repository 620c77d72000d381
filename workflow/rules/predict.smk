# Tile products per model and tile: embedding maps, gap-filled bands with std, class map.
# A map is cut into blocks of predict.block_px (one GPU job each), then gathered into one
# mosaic (netCDF + Cloud-Optimized GeoTIFFs). The block list depends on the tile's grid,
# so a checkpoint job reads it from the cube.


def map_aoi(tile):
    """``--aoi ...`` of one tile's map (predict.aoi: one window, or one per tile)."""
    aoi = PREDICT["aoi"]
    aoi = aoi.get(tile) if isinstance(aoi, dict) else aoi
    return "--aoi " + " ".join(str(v) for v in aoi) if aoi else ""


def map_args(wildcards):
    """Options of the block jobs (predict section of the config)."""
    p = PREDICT
    opts = [
        ref_args(),
        f"--chunk-px {p['chunk_px']}",
        f"--batch-size {p['batch_size']}",
    ]
    opts += [f"--num-samples {p['num_samples']}", f"--device {config['device']}"]
    opts += [f"--year {p['year']}"] if p["year"] else []
    opts += [f"--block-px {p['block_px']}"] if p["block_px"] else []
    opts += [map_aoi(wildcards.tile), "--products " + " ".join(p["products"])]
    opts += ["--dates " + " ".join(str(d) for d in p["dates"])] if p["dates"] else []
    opts += ["--mixed-precision"] if p["mixed_precision"] else []
    opts += [sensor_arg(config["gapfill"]["sensor"])]
    return " ".join(opts)


def map_blocks(wildcards):
    """The block files of one map and their cost files (known once the tile_blocks
    checkpoint has run)."""
    ids = json.loads(
        Path(checkpoints.tile_blocks.get(tile=wildcards.tile).output[0]).read_text()
    )
    folder = f"{R}/maps/{wildcards.model}/blocks/{wildcards.tile}"
    return {
        "blocks": [f"{folder}/{b}.nc" for b in ids],
        "costs": [f"{folder}/{b}_cost.json" for b in ids],
    }


checkpoint tile_blocks:
    input:
        lambda w: cube(w.tile, MAP_SENSOR),
    output:
        f"{R}/maps/blocks_{{tile}}.json",
    log:
        f"{R}/logs/predict/blocks_{{tile}}.log",
    conda:
        ENV
    params:
        block=f"--block-px {PREDICT['block_px']}" if PREDICT["block_px"] else "",
        aoi=lambda w: map_aoi(w.tile),
        chunk=PREDICT["chunk_px"],
    message:
        "Listing the map blocks of tile {wildcards.tile}"
    shell:
        "python -m gpvae.cli tile-blocks --cube {input:q} --out {output:q} {params.block} "
        "--chunk-px {params.chunk} {params.aoi} > {log} 2>&1"


rule predict_block:
    input:
        unpack(
            lambda w: {
                "cubes": list(tile_inputs(w.model, w.tile)["cubes"].values()),
                "masks": list(tile_inputs(w.model, w.tile)["masks"].values()),
            }
        ),
        blocks=f"{R}/maps/blocks_{{tile}}.json",
        model=f"{R}/models/{{model}}/best.pt",
        classifier=f"{R}/downstream/{{model}}/classifier.joblib",
    output:
        nc=temp(f"{R}/maps/{{model}}/blocks/{{tile}}/{{block}}.nc"),
        cost=temp(f"{R}/maps/{{model}}/blocks/{{tile}}/{{block}}_cost.json"),
    log:
        f"{R}/logs/predict/{{model}}_{{tile}}_{{block}}.log",
    wildcard_constraints:
        block=r"r\d+c\d+",
    conda:
        ENV
    threads: THREADS
    resources:
        gpu=1,
    params:
        inputs=lambda w: json.dumps(tile_inputs(w.model, w.tile), sort_keys=True),
        opts=map_args,
        check=lambda w: model_check(w.model),
    message:
        "Mapping block {wildcards.block} of tile {wildcards.tile} with model {wildcards.model}"
    shell:
        "OMP_NUM_THREADS={threads} python -m gpvae.cli predict-block "
        "--inputs {params.inputs:q} --checkpoint {input.model:q} "
        "--classifier {input.classifier:q} --out {output.nc:q} --block {wildcards.block} "
        "{params.opts} {params.check} > {log} 2>&1"


rule gather_tile:
    input:
        blocks=lambda w: map_blocks(w)["blocks"],
        costs=lambda w: map_blocks(w)["costs"],
    output:
        nc=f"{R}/maps/{{model}}/{{tile}}.nc",
        cost=f"{R}/maps/{{model}}/{{tile}}_cost.json",
    log:
        f"{R}/logs/predict/{{model}}_{{tile}}.log",
    conda:
        ENV
    params:
        geotiffs=" ".join(PREDICT["geotiffs"]),
    message:
        "Mosaicking the map of tile {wildcards.tile} with model {wildcards.model}"
    shell:
        "python -m gpvae.cli gather-tile --blocks {input.blocks:q} --out {output.nc:q} "
        "--geotiffs {params.geotiffs} > {log} 2>&1"

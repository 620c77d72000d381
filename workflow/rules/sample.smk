# Labelled pixel sampling with a parcel-grouped split -> the pixel dataset (contracts 2):
# candidates per tile, one draw over all tiles, a shard per tile, the shards merged.


def sample_tile_spec(tile):
    """One tile's part of the sample spec (its cubes, masks, parcels, truth)."""
    return {"inputs": {tile: sample_spec()["inputs"][tile]}}


def candidate_spec(tile):
    """What a tile's candidates depend on (not per_class, split or years: the draw's)."""
    spec = sample_spec()
    keep = ("erosion_px", "per_parcel_cap", "seed")
    return {
        "inputs": {tile: spec["inputs"][tile]},
        "class_field": spec["class_field"],
        "id_field": spec["id_field"],
        "sample": {k: spec["sample"][k] for k in keep},
    }


if not TABLE:

    rule sample_candidates:
        input:
            cube=lambda w: cube(w.tile, "S2" if "S2" in SENSORS else SENSORS[0]),
            parcels=lambda w: tile_path(config["inputs"]["parcels"]["path"], w.tile),
        output:
            f"{R}/samples/candidates/{{tile}}.parquet",
        log:
            f"{R}/logs/sample/candidates_{{tile}}.log",
        conda:
            ENV
        params:
            spec=lambda w: json.dumps(candidate_spec(w.tile), sort_keys=True),
        message:
            "Candidate pixels of the parcels of tile {wildcards.tile}"
        shell:
            "python -m gpvae.cli sample-candidates --spec {params.spec:q} "
            "--tile {wildcards.tile} --out {output:q} > {log} 2>&1"

    rule sample_draw:
        input:
            candidates=[f"{R}/samples/candidates/{t}.parquet" for t in TILES],
            cubes=[cube(t, s) for t in TILES for s in SENSORS],
        output:
            f"{R}/samples/draw.json",
        log:
            f"{R}/logs/sample/draw.log",
        conda:
            ENV
        params:
            spec=json.dumps(sample_spec(), sort_keys=True),
        message:
            "Drawing labelled pixels of {TILES} and splitting their parcels"
        shell:
            "python -m gpvae.cli sample-draw --spec {params.spec:q} "
            "--candidates {input.candidates:q} --out {output:q} > {log} 2>&1"

    rule sample:
        input:
            draw=f"{R}/samples/draw.json",
            cubes=lambda w: [cube(w.tile, s) for s in SENSORS],
            masks=lambda w: [mask(w.tile, s) for s in SENSORS],
            truth=lambda w: (
                [tile_path(config["inputs"]["truth"], w.tile)]
                if config["inputs"]["truth"]
                else []
            ),
        output:
            f"{R}/samples/tiles/{{tile}}.nc",
        log:
            f"{R}/logs/sample/{{tile}}.log",
        conda:
            ENV
        params:
            spec=lambda w: json.dumps(sample_tile_spec(w.tile), sort_keys=True),
        message:
            "Reading the drawn pixels of tile {wildcards.tile} into its pixel shard"
        shell:
            "python -m gpvae.cli sample --spec {params.spec:q} --tile {wildcards.tile} "
            "--plan {input.draw:q} --out {output:q} > {log} 2>&1"

    rule merge_samples:
        input:
            [f"{R}/samples/tiles/{t}.nc" for t in TILES],
        output:
            f"{R}/samples/pixels.nc",
        log:
            f"{R}/logs/sample/merge.log",
        conda:
            ENV
        message:
            "Merging the pixel shards of {TILES} into the pixel dataset"
        shell:
            "python -m gpvae.cli merge-samples --shards {input:q} --out {output:q} > {log} 2>&1"


if TABLE:

    rule table:
        input:
            TABLE["path"],
        output:
            f"{R}/samples/pixels.nc",
        log:
            f"{R}/logs/table.log",
        conda:
            ENV
        params:
            spec=json.dumps(table_spec(), sort_keys=True),
        message:
            "Converting the sample table {input} into the pixel dataset"
        shell:
            "python -m gpvae.cli table --spec {params.spec:q} --out {output:q} > {log} 2>&1"

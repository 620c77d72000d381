# Labelled pixel sampling with a parcel-grouped split -> the pixel dataset (contracts 2).


if not TABLE:

    rule sample:
        input:
            cubes=[cube(t, s) for t in TILES for s in SENSORS],
            masks=[mask(t, s) for t in TILES for s in SENSORS],
            parcels=[tile_path(config["inputs"]["parcels"]["path"], t) for t in TILES],
            truth=(
                [tile_path(config["inputs"]["truth"], t) for t in TILES]
                if config["inputs"]["truth"]
                else []
            ),
        output:
            f"{R}/samples/pixels.nc",
        log:
            f"{R}/logs/sample.log",
        conda:
            ENV
        params:
            spec=json.dumps(sample_spec(), sort_keys=True),
        message:
            "Sampling labelled pixels of {TILES} into the pixel dataset"
        shell:
            "python -m gpvae.cli sample --spec {params.spec:q} --out {output:q} > {log} 2>&1"


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

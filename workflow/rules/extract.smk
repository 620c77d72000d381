# Products -> one canonical cube per tile and sensor (docs/contracts.md section 1).


rule extract:
    input:
        sensor_input,
    output:
        f"{R}/cubes/{{tile}}/{{sensor}}.nc",
    log:
        f"{R}/logs/extract/{{tile}}_{{sensor}}.log",
    conda:
        ENV
    params:
        opts=lambda w: " ".join(
            extract_options()
            + (
                [f"--product {config['inputs']['S2']['product']}"]
                + (
                    ["--bands " + " ".join(config["extract"]["bands"])]
                    if config["extract"]["bands"]
                    else []
                )
                if w.sensor == "S2"
                else []
            )
        ),
    message:
        "Extracting the {wildcards.sensor} cube of tile {wildcards.tile}"
    shell:
        "python -m gpvae.cli extract --sensor {wildcards.sensor} --input {input:q} "
        "--tile {wildcards.tile} --out {output:q} {params.opts} > {log} 2>&1"

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
        src=lambda w: tile_path(sensor_config(w.sensor)["path"], w.tile),
        opts=extract_args,
    message:
        "Extracting the {wildcards.sensor} cube of tile {wildcards.tile}"
    shell:
        "python -m gpvae.cli extract --sensor {wildcards.sensor} --input {params.src:q} "
        "--tile {wildcards.tile} --out {output:q} {params.opts} > {log} 2>&1"

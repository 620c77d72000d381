# Valid-observation masks (cloud bits, no-data, dilation) and per-date cloud cover.


rule mask:
    input:
        f"{R}/cubes/{{tile}}/{{sensor}}.nc",
    output:
        mask=f"{R}/masks/{{tile}}/{{sensor}}.nc",
        table=f"{R}/masks/{{tile}}/{{sensor}}_cloud_cover.csv",
    log:
        f"{R}/logs/mask/{{tile}}_{{sensor}}.log",
    conda:
        ENV
    params:
        bits=" ".join(str(b) for b in config["mask"]["clm_bits"]),
        dilation=lambda w: (
            0
            if sensor_config(w.sensor).get("format") in WARPED
            else config["mask"]["dilation_px"]
        ),
        scl=" ".join(str(c) for c in config["mask"]["scl_classes"]),
    message:
        "Masking clouds and no-data in the {wildcards.sensor} cube of tile {wildcards.tile}"
    shell:
        "python -m gpvae.cli mask --cube {input:q} --out {output.mask:q} --table {output.table:q} "
        "--clm-bits {params.bits} --scl-classes {params.scl} --dilation {params.dilation} "
        "> {log} 2>&1"

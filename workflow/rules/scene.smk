# Demo scene: simulated Theia L2A and S1Tiling products (only when the config has `scene:`).
if "scene" in config:
    SCENE_DIR = config["scene"]["out_dir"]

    rule scene:
        output:
            s2=directory(f"{SCENE_DIR}/{{tile}}/S2"),
            s1=directory(f"{SCENE_DIR}/{{tile}}/S1"),
            parcels=f"{SCENE_DIR}/{{tile}}/parcels.gpkg",
            truth=f"{SCENE_DIR}/{{tile}}/truth_S2.nc",
            coarse=[
                directory(f"{SCENE_DIR}/{{tile}}/{name}")
                for key, name in (("landsat", "LANDSAT"), ("modis", "MODIS"))
                if config["scene"].get(key)
            ],
        log:
            f"{R}/logs/scene/{{tile}}.log",
        conda:
            ENV
        params:
            scene=json.dumps(
                {k: v for k, v in config["scene"].items() if k != "out_dir"},
                sort_keys=True,
            ),
            outdir=lambda w: f"{SCENE_DIR}/{w.tile}",
        message:
            "Simulating the demo scene for tile {wildcards.tile} (Theia L2A + S1Tiling)"
        shell:
            "python -m gpvae.cli scene --config {params.scene:q} --tile {wildcards.tile} "
            "--out {params.outdir} > {log} 2>&1"

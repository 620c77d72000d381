"""Command line: `gpvae <stage> ...`, what the Snakemake rules call (one subcommand per stage)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gpvae.errors import InputError
from gpvae.io.failures import no_space_errno


def _json(text: str) -> object:
    """Parse a JSON argument (or `@file.json`)."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text[1:]} ({exc})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc


def int_or_auto(text: str) -> int | str:
    """An integer, or the word auto."""
    return "auto" if text == "auto" else int(text)


def _cmd_check_config(a: argparse.Namespace) -> None:
    from gpvae.validate import check_config_file

    for warning in check_config_file(a.config):
        print(f"gpvae: warning: {warning}", file=sys.stderr)
    print(f"{a.config}: valid")


def _cmd_scene(a: argparse.Namespace) -> None:
    from gpvae.scene.config import scene_config
    from gpvae.scene.simulate import simulate_tile

    simulate_tile(scene_config(a.config), a.tile, Path(a.out))


def _cmd_extract(a: argparse.Namespace) -> None:
    from gpvae.io.readers import extract_cube
    from gpvae.io.sensors import sensor_registry

    sensor = sensor_registry(a.sensors)[a.sensor]
    fmt = a.format or {"S2": "theia", "S1_ASC": "s1tiling", "S1_DES": "s1tiling"}.get(
        sensor.name, "generic")
    options = dict(a.options or {})
    if a.product:
        options["product"] = a.product
    if a.grid:
        options["grid"] = Path(a.grid)
    extract_cube(fmt, sensor, a.input, a.tile, Path(a.out), bands=a.bands,
                 aoi=tuple(a.aoi) if a.aoi else None, start=a.start, end=a.end,
                 options=options)


def _cmd_mask(a: argparse.Namespace) -> None:
    from gpvae.preprocess.mask import compute_mask

    compute_mask(Path(a.cube), Path(a.out), Path(a.table), clm_bits=a.clm_bits,
                 dilation_px=a.dilation, scl_classes=tuple(a.scl_classes))


def _cmd_table(a: argparse.Namespace) -> None:
    from gpvae.preprocess.table import table_to_pixels

    spec = dict(a.spec)
    table = dict(spec.pop("table"))
    sample = spec.pop("sample")
    table_to_pixels(Path(table.pop("path")), Path(a.out), split_fractions=sample["split"],
                    seed=sample["seed"], classes=sample.get("classes"), span=sample,
                    sensors=spec.get("sensors"), **table)


def _cmd_sample(a: argparse.Namespace) -> None:
    from gpvae.preprocess.sample import read_plan, sample_pixels, sample_tile

    spec = a.spec
    if a.tile:  # one tile's shard of the draw
        if not a.plan:
            raise InputError("sample --tile needs the draw (--plan)", field="--plan",
                             fix="run `gpvae sample-draw` first and pass its JSON")
        sample_tile(a.tile, spec["inputs"][a.tile], read_plan(Path(a.plan)), Path(a.out))
        return
    s = spec["sample"]
    sample_pixels(spec["inputs"], Path(a.out), class_field=spec["class_field"],
                  id_field=spec["id_field"], per_class=s["per_class"],
                  per_parcel_cap=s["per_parcel_cap"], erosion_px=s["erosion_px"],
                  split_fractions=s["split"], seed=s["seed"], years=s.get("years"),
                  classes=s.get("classes"), span=s)


def _cmd_sample_candidates(a: argparse.Namespace) -> None:
    from gpvae.io.atomic import atomic_path
    from gpvae.preprocess.sample import first_cube, tile_candidates

    spec, s = a.spec, a.spec["sample"]
    tile = spec["inputs"][a.tile]
    frame = tile_candidates(a.tile, first_cube(tile), tile["parcels"],
                            class_field=spec["class_field"], id_field=spec["id_field"],
                            erosion_px=s["erosion_px"], per_parcel_cap=s["per_parcel_cap"],
                            seed=s["seed"])
    with atomic_path(Path(a.out)) as tmp:
        frame.to_parquet(tmp, index=False)


def _cmd_sample_draw(a: argparse.Namespace) -> None:
    import pandas as pd

    from gpvae.preprocess.sample import draw_samples, sample_attrs, write_plan

    spec, s = a.spec, a.spec["sample"]
    frames = {}
    for path in a.candidates:
        frame = pd.read_parquet(path)
        frames[str(frame["tile"].iloc[0]) if len(frame) else Path(path).stem] = frame
    plan = draw_samples(spec["inputs"], frames, per_class=s["per_class"],
                        per_parcel_cap=s["per_parcel_cap"], split_fractions=s["split"],
                        seed=s["seed"], years=s.get("years"), classes=s.get("classes"),
                        span=s, attrs=sample_attrs(spec["inputs"], spec["class_field"],
                                                   spec["id_field"], s["erosion_px"]))
    write_plan(plan, Path(a.out))


def _cmd_merge_samples(a: argparse.Namespace) -> None:
    from gpvae.io.pixels import merge_pixels

    merge_pixels([Path(p) for p in a.shards], Path(a.out))


def _cmd_train(a: argparse.Namespace) -> None:
    from gpvae.train.loop import train_and_publish

    train_and_publish(Path(a.pixels), a.model, a.model_config, Path(a.out), device=a.device,
                      resume=not a.no_resume, max_epochs=a.max_epochs,
                      init_from=Path(a.init_from) if a.init_from else None)


def _ref_days(a: argparse.Namespace, span: tuple[float, float] | None):
    """Reference dates of the options; ``--ref-end`` absent = the end of the data's span."""
    from gpvae.evaluate.embed import reference_days

    return reference_days(a.ref_start, a.ref_end, a.ref_step, span)


def _check_model(a: argparse.Namespace) -> None:
    """With --model and --model-config: the checkpoint must be that model's (fingerprint)."""
    if a.checkpoint and a.model is not None:
        from gpvae.data.checkpoint import check_fingerprint

        check_fingerprint(Path(a.checkpoint), a.model, a.model_config or {})


def _cmd_embed(a: argparse.Namespace) -> None:
    from gpvae.data.dataset import dataset_info
    from gpvae.evaluate.embed import embed_pixels, embed_raw_linear

    _check_model(a)
    ref_days = _ref_days(a, dataset_info(Path(a.pixels)).time_range)
    if a.checkpoint:
        embed_pixels(Path(a.pixels), Path(a.checkpoint), Path(a.out), ref_days=ref_days,
                     device=a.device, batch_size=a.batch_size)
    else:
        embed_raw_linear(Path(a.pixels), Path(a.out), ref_days=ref_days, sensor=a.sensor)


def _cmd_transfer(a: argparse.Namespace) -> None:
    from gpvae.data.dataset import dataset_info
    from gpvae.protocols.transfer import transfer_embeddings

    ref_days = _ref_days(a, dataset_info(Path(a.pixels)).time_range)
    transfer_embeddings(Path(a.pixels), a.model, a.model_config, a.kind, Path(a.model_dir),
                        Path(a.out), ref_days=ref_days, device=a.device,
                        batch_size=a.batch_size)


def _cmd_hide(a: argparse.Namespace) -> None:
    from gpvae.evaluate.hiding import make_hidden

    make_hidden(Path(a.pixels), Path(a.out), random_fraction=a.random_fraction,
                gap_days=tuple(a.gap_days), seed=a.seed, max_samples=a.max_samples,
                sensor=a.sensor)


def _cmd_gapfill(a: argparse.Namespace) -> None:
    from gpvae.evaluate.gapfill import gapfill_baseline, gapfill_model

    _check_model(a)
    if a.checkpoint:
        gapfill_model(Path(a.pixels), Path(a.hidden), Path(a.checkpoint), Path(a.out),
                      Path(a.table), device=a.device)
    else:
        gapfill_baseline(Path(a.pixels), Path(a.hidden), a.baseline, Path(a.out),
                         Path(a.table), device=a.device)


def _cmd_classify(a: argparse.Namespace) -> None:
    from gpvae.evaluate.downstream import classify

    transfer = {kind: Path(p) for kind, p in (("region", a.transfer_region),
                                              ("year", a.transfer_year)) if p}
    classify(Path(a.embeddings), Path(a.out), Path(a.confusion), Path(a.classifier),
             classifiers=tuple(a.classifiers), seeds=tuple(a.seeds),
             protocols=tuple(a.protocols), label_fractions=tuple(a.label_fractions),
             transfer=transfer)


def _tile_files(a: argparse.Namespace) -> tuple[dict[str, Path], dict[str, Path]]:
    """The checked model's tile inputs of a tile command: (cubes, masks) per sensor."""
    _check_model(a)
    spec = a.inputs
    return ({k: Path(v) for k, v in spec["cubes"].items()},
            {k: Path(v) for k, v in spec["masks"].items()})


def _tile_ref_days(a: argparse.Namespace):
    """Reference days of a tile command (the checkpoint's span when --ref-end is not set)."""
    from gpvae.data.checkpoint import read_checkpoint

    span = read_checkpoint(Path(a.checkpoint)).get("span") if a.ref_end is None else None
    return _ref_days(a, span)


def _map_options(a: argparse.Namespace) -> dict:
    """Keywords of predict_block / predict_tile shared by their commands."""
    return {"ref_days": _tile_ref_days(a), "year": a.year, "chunk_px": a.chunk_px,
            "device": a.device, "batch_size": a.batch_size, "num_samples": a.num_samples,
            "sensor": a.sensor, "aoi": a.aoi, "products": a.products, "dates": a.dates,
            "mixed_precision": a.mixed_precision, "block_px": a.block_px,
            "region": a.inputs.get("region")}


def _cmd_predict_tile(a: argparse.Namespace) -> None:
    from gpvae.evaluate.tile import predict_tile

    cubes, masks = _tile_files(a)
    predict_tile(cubes, masks, Path(a.checkpoint), Path(a.classifier), Path(a.out),
                 geotiffs=a.geotiffs, **_map_options(a))


def _cmd_predict_block(a: argparse.Namespace) -> None:
    from gpvae.evaluate.tile import predict_block

    cubes, masks = _tile_files(a)
    predict_block(cubes, masks, Path(a.checkpoint), Path(a.classifier), Path(a.out),
                  block=a.block, **_map_options(a))


def _cmd_tile_blocks(a: argparse.Namespace) -> None:
    from gpvae.evaluate.tile import list_blocks

    list_blocks(Path(a.cube), Path(a.out), block_px=a.block_px, chunk_px=a.chunk_px,
                aoi=a.aoi)


def _cmd_gather_tile(a: argparse.Namespace) -> None:
    from gpvae.evaluate.tile_gather import gather_tile

    gather_tile([Path(p) for p in a.blocks], Path(a.out), geotiffs=a.geotiffs)


def _cmd_tile_state(a: argparse.Namespace) -> None:
    from gpvae.evaluate.stream_tile import tile_state

    cubes, masks = _tile_files(a)
    tile_state(cubes, masks, Path(a.checkpoint), Path(a.out), ref_days=_tile_ref_days(a),
               year=a.year, chunk_px=a.chunk_px, device=a.device,
               region=a.inputs.get("region"))


def _cmd_update_tile(a: argparse.Namespace) -> None:
    from gpvae.evaluate.stream_tile import update_tile

    cubes, masks = _tile_files(a)
    update_tile(Path(a.state), cubes, masks, Path(a.checkpoint), Path(a.classifier),
                Path(a.out), Path(a.out_state), chunk_px=a.chunk_px, device=a.device,
                num_samples=a.num_samples, sensor=a.sensor)


def _cmd_metrics(a: argparse.Namespace) -> None:
    from gpvae.evaluate.merge import merge_metrics

    merge_metrics([Path(p) for p in a.inputs], Path(a.out), Path(a.summary_dir))


def _add_ref_days(s: argparse.ArgumentParser) -> None:
    s.add_argument("--ref-start", type=float, default=0.0,
                   help="first reference day (days since each sample's time origin)")
    s.add_argument("--ref-end", type=float, default=None,
                   help="last reference day (default: the data's span length)")
    s.add_argument("--ref-step", type=float, default=10.0, help="days between reference dates")


def _add_model_check(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", default=None,
                   help="name of the model the checkpoint must belong to (with --model-config)")
    s.add_argument("--model-config", type=_json, default=None,
                   help="its settings, JSON: a checkpoint trained otherwise is refused")


def _add_map_options(s: argparse.ArgumentParser) -> None:
    """Options of the tile map commands (predict-tile, predict-block)."""
    s.add_argument("--sensor", default=None,
                   help="gap-filled sensor (default: the model's first optical or index sensor)")
    s.add_argument("--inputs", type=_json, required=True,
                   help='JSON: {"cubes": {sensor: path}, "masks": {sensor: path}, "region": name}')
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--classifier", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--year", type=int, default=None)
    s.add_argument("--chunk-px", type=int_or_auto, default="auto",
                   help="window side in pixels, or auto (256 on GPU, 64 on CPU)")
    s.add_argument("--batch-size", type=int_or_auto, default="auto",
                   help="pixels per model call, or auto (65536 on GPU, lowered on "
                        "out-of-memory; 4096 on CPU)")
    s.add_argument("--num-samples", type=int, default=32,
                   help="latent samples decoded for the gap-filled mean and std")
    s.add_argument("--block-px", type=int, default=None,
                   help="block side in pixels (rounded up to a multiple of the window); "
                        "default one block")
    s.add_argument("--aoi", nargs=4, type=float, default=None,
                   metavar=("XMIN", "YMIN", "XMAX", "YMAX"), help="map this window only")
    s.add_argument("--products", nargs="*", default=None,
                   help="variables to write (default all: embedding embedding_var gapfilled "
                        "gapfilled_std class_map)")
    s.add_argument("--dates", type=float, nargs="*", default=None,
                   help="days since the span start of the dates to write (default: every "
                        "reference date)")
    s.add_argument("--mixed-precision", action="store_true",
                   help="bf16 autocast for encoders and decoders")
    s.add_argument("--device", default="auto")
    _add_ref_days(s)
    _add_model_check(s)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `gpvae` command."""
    p = argparse.ArgumentParser(prog="gpvae", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("check-config", help="check a config file as the workflow does at "
                       "start-up (YAML, schema, inputs' metadata), without running anything")
    s.add_argument("config", help="YAML config file (paths relative to the current folder)")
    s.set_defaults(func=_cmd_check_config)

    s = sub.add_parser("scene", help="simulate one demo tile (Theia L2A + S1Tiling products)")
    s.add_argument("--config", type=_json, default=None, help="scene section as JSON")
    s.add_argument("--tile", required=True)
    s.add_argument("--out", required=True, help="output folder for the tile")
    s.set_defaults(func=_cmd_scene)

    s = sub.add_parser("extract", help="read products into one canonical cube (netCDF)")
    s.add_argument("--sensor", required=True,
                   help="a sensor of the registry (built-in or declared in --sensors)")
    s.add_argument("--sensors", type=_json, default=None,
                   help="the config's sensor declarations (JSON), when it has any")
    s.add_argument("--input", required=True, help="folder of products")
    s.add_argument("--tile", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--bands", nargs="*", default=None)
    s.add_argument("--format", default=None,
                   choices=["theia", "sen2cor", "stac", "s1tiling", "openeo", "generic",
                            "landsat", "appeears"],
                   help="input format (default: theia for S2, s1tiling for S1, else generic)")
    s.add_argument("--options", type=_json, default=None,
                   help="format-specific settings as JSON (e.g. the generic band mapping)")
    s.add_argument("--product", default=None, choices=["FRE", "SRE"], help="Theia product")
    s.add_argument("--grid", default=None,
                   help="landsat / appeears: the tile's reference cube (its finest sensor); "
                        "the coarse grid is aligned with it")
    s.add_argument("--aoi", nargs=4, type=float, default=None,
                   metavar=("XMIN", "YMIN", "XMAX", "YMAX"))
    s.add_argument("--start", default=None)
    s.add_argument("--end", default=None)
    s.set_defaults(func=_cmd_extract)

    s = sub.add_parser("mask", help="valid-observation mask and per-date cloud-cover table")
    s.add_argument("--cube", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--table", required=True)
    s.add_argument("--clm-bits", type=int, nargs="*", default=[0])
    s.add_argument("--dilation", type=int, default=0)
    s.add_argument("--scl-classes", type=int, nargs="*", default=[0, 1, 3, 8, 9, 10])
    s.set_defaults(func=_cmd_mask)

    s = sub.add_parser("table", help="a table of extracted time series -> the pixel dataset")
    s.add_argument("--spec", type=_json, required=True,
                   help="JSON (or @file): {table: {...inputs.table...}, sample: {...}}")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_table)

    spec_help = "JSON (or @file): inputs per tile, field names and sample settings"
    s = sub.add_parser("sample", help="sample labelled pixels into the pixel dataset (with "
                       "--tile: that tile's shard of a draw)")
    s.add_argument("--spec", type=_json, required=True, help=spec_help)
    s.add_argument("--tile", default=None, help="write this tile's shard only")
    s.add_argument("--plan", default=None, help="the draw (sample-draw's JSON), with --tile")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_sample)

    s = sub.add_parser("sample-candidates", help="one tile's candidate pixels (parquet)")
    s.add_argument("--spec", type=_json, required=True, help=spec_help)
    s.add_argument("--tile", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_sample_candidates)

    s = sub.add_parser("sample-draw", help="draw pixels and split parcels over all tiles")
    s.add_argument("--spec", type=_json, required=True, help=spec_help)
    s.add_argument("--candidates", nargs="+", required=True, help="candidate tables")
    s.add_argument("--out", required=True, help="the draw (JSON)")
    s.set_defaults(func=_cmd_sample_draw)

    s = sub.add_parser("merge-samples", help="merge tile shards into the pixel dataset")
    s.add_argument("--shards", nargs="+", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_merge_samples)

    s = sub.add_parser("train", help="train one model on the pixel dataset")
    s.add_argument("--pixels", required=True)
    s.add_argument("--model", required=True, help="model name")
    s.add_argument("--model-config", type=_json, required=True, help="model settings, JSON")
    s.add_argument("--out", required=True, help="output folder for the model")
    s.add_argument("--device", default="auto")
    s.add_argument("--no-resume", action="store_true")
    s.add_argument("--max-epochs", type=int, default=None)
    s.add_argument("--init-from", default=None,
                   help="checkpoint of the trained model this one adds sensors to (only the "
                        "new sensors' encoder, decoder, likelihood and date effects train)")
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("embed", help="latent embeddings at reference dates (or raw features)")
    s.add_argument("--pixels", required=True)
    s.add_argument("--checkpoint", default=None,
                   help="trained model; without it: linearly interpolated raw bands")
    s.add_argument("--sensor", default=None,
                   help="raw reference: sensor (default: the first optical or index sensor)")
    s.add_argument("--out", required=True)
    s.add_argument("--device", default="auto")
    s.add_argument("--batch-size", type=int, default=512)
    _add_ref_days(s)
    _add_model_check(s)
    s.set_defaults(func=_cmd_embed)

    s = sub.add_parser("transfer", help="held-out-domain models and their embeddings (the "
                       "unseen-region / unseen-year protocols)")
    s.add_argument("--pixels", required=True)
    s.add_argument("--model", required=True, help="model name")
    s.add_argument("--model-config", type=_json, required=True, help="JSON model settings")
    s.add_argument("--kind", required=True, choices=["region", "year"])
    s.add_argument("--model-dir", required=True, help="folder of the held-out-domain models")
    s.add_argument("--out", required=True, help="folder of embeddings files <value>.nc")
    s.add_argument("--device", default="auto")
    s.add_argument("--batch-size", type=int, default=512)
    _add_ref_days(s)
    s.set_defaults(func=_cmd_transfer)

    s = sub.add_parser("hide", help="the gap-filling protocol: which values to hide")
    s.add_argument("--sensor", default=None,
                   help="sensor to hide (default: the first optical or index sensor)")
    s.add_argument("--pixels", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--random-fraction", type=float, default=0.2)
    s.add_argument("--gap-days", type=float, nargs=2, default=[30.0, 60.0])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-samples", type=int, default=None)
    s.set_defaults(func=_cmd_hide)

    s = sub.add_parser("gapfill", help="predict hidden values with a model or a baseline")
    s.add_argument("--pixels", required=True)
    s.add_argument("--hidden", required=True)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", default=None)
    g.add_argument("--baseline", default=None,
                   help="linear, gp, whittaker, scene_mean or scene_offset")
    s.add_argument("--out", required=True, help="predictions (netCDF)")
    s.add_argument("--table", required=True, help="tidy metrics (CSV)")
    s.add_argument("--device", default="auto")
    _add_model_check(s)
    s.set_defaults(func=_cmd_gapfill)

    s = sub.add_parser("classify", help="downstream classification from frozen embeddings")
    s.add_argument("--embeddings", required=True)
    s.add_argument("--out", required=True, help="tidy metrics (CSV)")
    s.add_argument("--confusion", required=True)
    s.add_argument("--classifier", required=True, help="fitted random forest for the maps")
    s.add_argument("--classifiers", nargs="+", default=["rf", "logreg", "mlp"])
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--protocols", nargs="+", default=["parcel", "region", "year", "labels"])
    s.add_argument("--label-fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    s.add_argument("--transfer-region", default=None,
                   help="folder of embeddings by models trained without each region")
    s.add_argument("--transfer-year", default=None,
                   help="folder of embeddings by models trained without each year")
    s.set_defaults(func=_cmd_classify)

    s = sub.add_parser("predict-tile", help="tile maps in one process: every block, then the "
                       "mosaic (embeddings, gap-filled bands, classes)")
    _add_map_options(s)
    s.add_argument("--geotiffs", nargs="*", default=None,
                   help="GeoTIFFs to write (default: class_map embedding_rgb rgb)")
    s.set_defaults(func=_cmd_predict_tile)

    s = sub.add_parser("predict-block", help="one block of a tile map (a packed netCDF)")
    _add_map_options(s)
    s.add_argument("--block", default=None, help="block id r<row>c<col> (default: whole map)")
    s.set_defaults(func=_cmd_predict_block)

    s = sub.add_parser("tile-blocks", help="the block ids of a tile map (JSON list)")
    s.add_argument("--cube", required=True, help="a cube of the tile (its grid)")
    s.add_argument("--out", required=True)
    s.add_argument("--block-px", type=int, default=None)
    s.add_argument("--chunk-px", type=int_or_auto, default="auto")
    s.add_argument("--aoi", nargs=4, type=float, default=None,
                   metavar=("XMIN", "YMIN", "XMAX", "YMAX"))
    s.set_defaults(func=_cmd_tile_blocks)

    s = sub.add_parser("gather-tile", help="mosaic the blocks of a tile map, its GeoTIFFs")
    s.add_argument("--blocks", nargs="+", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--geotiffs", nargs="*", default=None,
                   help="GeoTIFFs to write (default: class_map embedding_rgb rgb)")
    s.set_defaults(func=_cmd_gather_tile)

    s = sub.add_parser("tile-state", help="a tile's filter state (markov GP-VAEs), for "
                       "updates with new acquisitions")
    s.add_argument("--inputs", type=_json, required=True,
                   help='JSON: {"cubes": {sensor: path}, "masks": {sensor: path}, "region"}')
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--out", required=True, help="state file (netCDF)")
    s.add_argument("--year", type=int, default=None)
    s.add_argument("--chunk-px", type=int_or_auto, default="auto")
    s.add_argument("--device", default="auto")
    _add_ref_days(s)
    _add_model_check(s)
    s.set_defaults(func=_cmd_tile_state)

    s = sub.add_parser("update-tile", help="update a tile's products and state with new "
                       "acquisitions only")
    s.add_argument("--state", required=True, help="the tile's state file")
    s.add_argument("--inputs", type=_json, required=True,
                   help='JSON: {"cubes": {sensor: path}, "masks": {sensor: path}} of the new '
                        "acquisitions")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--classifier", required=True)
    s.add_argument("--out", required=True, help="updated tile product (netCDF)")
    s.add_argument("--out-state", required=True, help="updated state file")
    s.add_argument("--sensor", default=None, help="gap-filled sensor (default: as the maps)")
    s.add_argument("--chunk-px", type=int_or_auto, default="auto")
    s.add_argument("--num-samples", type=int, default=32)
    s.add_argument("--device", default="auto")
    _add_model_check(s)
    s.set_defaults(func=_cmd_update_tile)

    s = sub.add_parser("metrics", help="merge tidy metrics into all.csv + summaries")
    s.add_argument("--inputs", nargs="+", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--summary-dir", required=True)
    s.set_defaults(func=_cmd_metrics)

    from gpvae.report.cli import add_figures_parser

    add_figures_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 on bad input, with a one-paragraph error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except InputError as exc:
        return _fail(args.command, exc)
    except OSError as exc:
        if not no_space_errno(exc):
            raise
        return _fail(args.command, InputError(f"out of disk space ({exc})", field="disk space",
                                              fix="free space on the disk, then rerun"))
    return 0


def _fail(command: str, exc: InputError) -> int:
    """Report a bad-input error on stderr (the job's log), one message, no traceback: exit
    code 2."""
    print(f"gpvae {command}: error: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

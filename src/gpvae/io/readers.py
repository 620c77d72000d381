"""Which reader turns which input format into a canonical cube (one entry point per format)."""

from __future__ import annotations

from pathlib import Path

from gpvae.errors import InputError
from gpvae.io.sensors import Sensor, builtin

#: Input format -> sensors it can deliver (None: any sensor of the registry).
FORMATS: dict[str, tuple[str, ...] | None] = {
    "theia": ("S2",),
    "sen2cor": ("S2",),
    "stac": ("S2",),
    "s1tiling": ("S1_ASC", "S1_DES"),
    "openeo": None,
    "generic": None,
    "landsat": ("LANDSAT",),
    "appeears": ("MOD13Q1",),
}
#: Formats of coarse sensors warped onto the tile's grid (the reference cube of ``grid``).
WARPED = ("landsat", "appeears")


def extract_cube(fmt: str, sensor: Sensor | str, src: str | Path, tile: str, out: Path, *,
                 bands: list[str] | None = None,
                 aoi: tuple[float, float, float, float] | None = None,
                 start: str | None = None, end: str | None = None,
                 options: dict | None = None) -> Path:
    """Read products of format ``fmt`` into the canonical cube of ``sensor`` for ``tile``.

    ``sensor``: a registry sensor (:mod:`gpvae.io.sensors`), or the name of a built-in.

    ``options``: format-specific settings (theia: product; stac: collection; openeo: crs;
    generic: bands mapping, time_var, mask, crs, scale, offset, sar_units; landsat: mask,
    grid; appeears: reliability_invalid, grid). ``grid``: the tile's reference cube the
    landsat / appeears readers align their grid with.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown input format {fmt!r}", field="inputs.<sensor>.format",
                         fix=f"use one of {', '.join(FORMATS)}")
    sensor = builtin(sensor) if isinstance(sensor, str) else sensor
    if FORMATS[fmt] is not None and sensor.name not in FORMATS[fmt]:
        raise InputError(f"format {fmt!r} cannot deliver sensor {sensor.name}",
                         field=f"inputs.{sensor.name}.format",
                         fix=f"{fmt} delivers {', '.join(FORMATS[fmt])}; read other sensors "
                         "with format generic or openeo")
    opts = dict(options or {})
    common = {"aoi": aoi, "start": start, "end": end}
    src_path = Path(src)
    if fmt == "theia":
        from gpvae.io.extract import extract_s2_theia

        return extract_s2_theia(src_path, tile, out, bands=bands,
                                product=opts.get("product", "FRE"), **common)
    if fmt == "s1tiling":
        from gpvae.io.extract import extract_s1tiling

        return extract_s1tiling(src_path, tile, sensor.name.split("_", 1)[1], out, **common)
    if fmt == "sen2cor":
        from gpvae.io.sen2cor import extract_s2_sen2cor

        return extract_s2_sen2cor(src_path, tile, out, bands=bands, **common)
    if fmt == "stac":
        from gpvae.io.stac import extract_stac

        return extract_stac(str(src), tile, out, bands=bands,
                            collection=opts.get("collection"), **common)
    if fmt == "landsat":
        from gpvae.io.landsat import extract_landsat

        return extract_landsat(src_path, tile, out, sensor=sensor, bands=bands,
                               grid=opts.get("grid"), mask=opts.get("mask"), **common)
    if fmt == "appeears":
        from gpvae.io.appeears import extract_appeears

        return extract_appeears(src_path, tile, out, sensor=sensor, bands=bands,
                                grid=opts.get("grid"),
                                reliability_invalid=opts.get("reliability_invalid"), **common)
    if fmt == "openeo":
        from gpvae.io.openeo import extract_openeo

        return extract_openeo(src_path, tile, out, sensor=sensor, bands=bands,
                              crs=opts.get("crs"), **common)
    from gpvae.io.generic import extract_generic

    keys = ("time_var", "mask", "crs", "scale", "offset", "sar_units")
    if "bands" not in opts:
        raise InputError("the generic reader needs a band mapping",
                         field=f"inputs.{sensor.name}.bands",
                         fix=f"add bands: {{{sensor.band_names[0]}: <variable name>, ...}}")
    band_map = dict(opts["bands"])
    if bands is not None:  # extract a subset of the mapped bands
        sensor.check_bands(bands, field="extract.bands")
        band_map = {b: v for b, v in band_map.items() if b in bands}
    return extract_generic(src_path, tile, out, sensor=sensor, bands=band_map,
                           **{k: opts[k] for k in keys if opts.get(k) is not None}, **common)

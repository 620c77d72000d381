"""Clouds, cloud shadows, their Theia CLM bits and partial swaths for Sentinel-2 dates.

Cloud opacity is a thresholded Gaussian random field (spectral synthesis, two scales), so
clouds are spatially correlated with semi-transparent edges; shadows are the cloud field
displaced away from the sun (ground shift h tan(sza)). The CLM mask flags thick clouds,
the thinnest clouds (bit 4) except the faintest ``miss_fraction`` of them, and shadows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gpvae.scene.weather import seasonal

#: Top-of-cloud reflectance (S2_BANDS order); ice/water absorption lowers the SWIR.
CLOUD = np.array([0.46, 0.45, 0.44, 0.44, 0.44, 0.44, 0.45, 0.45, 0.34, 0.22])
#: Fraction of direct light removed in a full cloud shadow (diffuse blue sky light remains).
SHADOW_DEPTH = np.array([0.50, 0.55, 0.60, 0.62, 0.65, 0.67, 0.68, 0.68, 0.70, 0.70])
#: Opacity above which a cloud is "detected" (CLM bits 0-1); below it is "thinnest" (bit 4).
THICK = 0.3
#: Shadow strength above which the mask flags a shadow (bits 0 and 5, or 6 from outside).
SHADOW_FLAG = 0.3
#: Sun azimuth (degrees from north) at the ~10:45 UTC overpass over France.
SUN_AZIMUTH = 160.0
#: Path radiance of thin haze as a reflectance (S2_BANDS order): strongest in the blue
#: (Rayleigh/aerosol scattering), weakest in the SWIR.
HAZE = np.array([0.16, 0.14, 0.12, 0.11, 0.10, 0.10, 0.09, 0.09, 0.05, 0.03])


@dataclasses.dataclass(frozen=True)
class CloudLayer:
    """One date: cloud opacity ``alpha`` and shadow strength ``shadow`` (H, W) in [0, 1];
    ``shadow_inside``: the casting cloud lies inside the image; flags of the date."""

    alpha: np.ndarray
    shadow: np.ndarray
    shadow_inside: np.ndarray
    multi_temporal: bool
    high: bool


def cloud_cover(doy: np.ndarray, rain_mm: np.ndarray, mean: float,
                rng: np.random.Generator) -> np.ndarray:
    """Cloud cover fraction per date: seasonal mean m (x1.35 in winter, x0.65 in summer; x1.4
    on rainy days, x0.85 otherwise); fully overcast with prob 0.8 m^2, fully clear with prob
    0.7 (1 - m)^2, otherwise Beta with mean m."""
    m = np.clip(mean * seasonal(doy, 1.35, 0.65) * np.where(rain_mm > 1.0, 1.4, 0.85),
                0.02, 0.95)
    u = rng.random(len(m))
    beta = rng.beta(3.0 * m, 3.0 * (1 - m))
    full = u < 0.8 * m**2
    clear = (u >= 0.8 * m**2) & (u < 0.8 * m**2 + 0.7 * (1 - m) ** 2)
    return np.where(full, 1.0, np.where(clear, 0.0, beta))


def gaussian_field(shape: tuple[int, int], scales: tuple[float, ...], weights: tuple[float, ...],
                   rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field: white noise filtered by a sum of
    Gaussian kernels of std ``scales`` (pixels), by FFT (periodic)."""
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f2 = fy**2 + fx**2
    kernel = sum(w * np.exp(-2 * np.pi**2 * s**2 * f2) for s, w in zip(scales, weights,
                                                                      strict=True))
    field = np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=shape)
    return (field - field.mean()) / max(field.std(), 1e-12)


def cloud_layer(cover: float, size: int, doy: float, rng: np.random.Generator) -> CloudLayer:
    """Cloud opacity and shadows of one date with the given cloud ``cover`` fraction."""
    multi, high = bool(rng.random() < 0.5), bool(rng.random() < 0.25)
    zeros = np.zeros((size, size))
    if cover <= 0.0:
        return CloudLayer(zeros, zeros, zeros.astype(bool), multi, high)
    if cover >= 1.0:
        return CloudLayer(np.ones((size, size)), zeros, zeros.astype(bool), multi, high)
    margin = size // 2
    n = size + 2 * margin
    scale = rng.uniform(size / 14, size / 5)
    field = gaussian_field((n, n), (scale, scale / 5), (1.0, 0.25), rng)
    inner = field[margin:margin + size, margin:margin + size]
    thr = np.quantile(inner, 1.0 - cover)
    alpha_ext = np.clip((field - thr) / rng.uniform(0.4, 1.0), 0.0, 1.0)
    # sun zenith at ~11:00 local solar time, ~45 N: ~22 deg in June, ~68 deg in December
    sza = np.radians(seasonal(doy, 68.0, 22.0))
    dist = min(rng.uniform(500.0, 2000.0) * np.tan(sza) / 10.0, margin)
    az = np.radians(SUN_AZIMUTH)
    dr, dc = int(round(-np.cos(az) * dist)), int(round(np.sin(az) * dist))
    alpha = alpha_ext[margin:margin + size, margin:margin + size]
    src = alpha_ext[margin + dr:margin + dr + size, margin + dc:margin + dc + size]
    shadow = np.clip((src - 0.2) / 0.5, 0.0, 1.0) * (1.0 - alpha)
    rows = np.arange(size)[:, None] + dr
    cols = np.arange(size)[None, :] + dc
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    return CloudLayer(alpha, shadow, np.broadcast_to(inside, alpha.shape), multi, high)


def clm_byte(layer: CloudLayer, miss_fraction: float) -> np.ndarray:
    """Theia CLM_R1 byte: detected clouds bits 0, 1, 2 (+3 multi-temporal, +7 high); thinnest
    clouds bit 4 except the faintest ``miss_fraction`` of them (missed, as real masks miss
    thin edges); shadows bits 0 and 5 (6 when the cloud is outside the image)."""
    a = layer.alpha
    clm = np.zeros(a.shape, np.uint8)
    thick = a >= THICK
    thick_bits = 0b111 | (0b1000 if layer.multi_temporal else 0) | (0x80 if layer.high else 0)
    clm[thick] = thick_bits
    thin = (a > 0) & ~thick
    if thin.any():
        cut = np.quantile(a[thin], miss_fraction) if miss_fraction > 0 else -1.0
        flagged = thin & (a > cut) if miss_fraction < 1 else np.zeros_like(thin)
        clm[flagged] |= 0b10000
    shadow = (layer.shadow >= SHADOW_FLAG) & ~thick
    clm[shadow & layer.shadow_inside] |= 0b100001
    clm[shadow & ~layer.shadow_inside] |= 0b1000001
    return clm


def apply_clouds(refl: np.ndarray, layer: CloudLayer, brightness: float) -> np.ndarray:
    """Observed reflectance (B, H, W): shadowed surface (1 - s d_b) R under a cloud of opacity
    alpha: (1 - alpha) R' + alpha * brightness * CLOUD."""
    shaded = refl * (1.0 - layer.shadow[None] * SHADOW_DEPTH[:, None, None])
    a = layer.alpha[None]
    return (1.0 - a) * shaded + a * (brightness * CLOUD)[:, None, None]


def haze_opacity(num_dates: int, mean: float, rng: np.random.Generator) -> np.ndarray:
    """Scene-wide thin-haze opacity per date, never flagged by the mask: clear (0) on 50 % of
    the dates, otherwise exponential with the given ``mean`` (capped at 0.25)."""
    hazy = rng.random(num_dates) < 0.5
    return np.where(hazy, np.minimum(rng.exponential(mean, num_dates), 0.25), 0.0)


def apply_haze(refl: np.ndarray, opacity: float, rng: np.random.Generator) -> np.ndarray:
    """Reflectance (B, H, W) seen through haze of scene-mean ``opacity`` (+-20 % over a smooth
    field): (1 - h) R + h * HAZE, the same on every pixel of the date up to that variation."""
    if opacity <= 0.0:
        return refl
    size = refl.shape[-1]
    field = 1.0 + 0.2 * gaussian_field((size, size), (size / 3.0,), (1.0,), rng)
    h = np.clip(opacity * field, 0.0, 1.0)[None]
    return (1.0 - h) * refl + h * HAZE[:, None, None]


def swath_edge(size: int, rng: np.random.Generator) -> np.ndarray:
    """No-data mask (H, W) of a partial swath: beyond a slightly slanted swath edge (+-12 deg
    from north), covering 15-70 % of the tile on a random side."""
    frac = rng.uniform(0.15, 0.7)
    slope = np.tan(np.radians(rng.uniform(-12.0, 12.0)))
    rows, cols = np.mgrid[0:size, 0:size]
    edge = (1 - frac) * size + slope * (rows - size / 2)
    out = cols >= edge
    return out if rng.random() < 0.5 else out[:, ::-1]

"""Sentinel-2 surface reflectance from linear spectral mixing of endmembers.

R(t, b) = sum_e f_e(t) S_e(b) (linear mixture model, e.g. Adams et al. 1986), with a soil
endmember darkened by moisture (Lobell & Asner 2002) and per-parcel endmember variability.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gpvae.io.sensors import S2_BANDS
from gpvae.scene.phenology import Fractions
from gpvae.scene.weather import M_RES, M_SAT

#: Endmember reflectance in S2_BANDS order (B02 B03 B04 B05 B06 B07 B08 B8A B11 B12).
ENDMEMBERS: dict[str, np.ndarray] = {
    "green": np.array([0.025, 0.065, 0.030, 0.110, 0.300, 0.385, 0.430, 0.450, 0.210, 0.095]),
    "dry": np.array([0.080, 0.110, 0.140, 0.170, 0.200, 0.220, 0.240, 0.260, 0.340, 0.260]),
    "flower": np.array([0.050, 0.200, 0.190, 0.230, 0.320, 0.380, 0.410, 0.420, 0.220, 0.110]),
    "soil": np.array([0.075, 0.105, 0.150, 0.175, 0.190, 0.205, 0.215, 0.230, 0.320, 0.280]),
    "urban": np.array([0.100, 0.115, 0.125, 0.140, 0.150, 0.160, 0.170, 0.175, 0.200, 0.185]),
    "water": np.array([0.060, 0.050, 0.030, 0.020, 0.012, 0.010, 0.008, 0.007, 0.003, 0.002]),
}
#: Relative darkening of a saturated soil per band (stronger in the SWIR water bands).
MOISTURE_DARKENING = np.array([0.35, 0.35, 0.38, 0.40, 0.42, 0.42, 0.43, 0.44, 0.55, 0.60])
_VIS, _NIR, _SWIR = slice(0, 4), slice(4, 8), slice(8, 10)
assert all(len(v) == len(S2_BANDS) for v in ENDMEMBERS.values())


@dataclasses.dataclass(frozen=True)
class SpectralTraits:
    """Per-parcel endmember spectra (P, B) and soil moisture response (P,)."""

    spectra: dict[str, np.ndarray]
    moisture_response: np.ndarray


def draw_spectral_traits(n: int, rng: np.random.Generator) -> SpectralTraits:
    """Per-parcel variability: leaf pigments (visible x U(0.85, 1.15)), structure (NIR x
    U(0.9, 1.1)), water (SWIR x U(0.9, 1.1)); soil brightness lognormal (sd 0.18), straw
    x U(0.85, 1.15), urban x U(0.75, 1.4), water turbidity (visible x U(0.7, 1.8))."""
    def scaled(name: str, parts: list[tuple[slice, float, float]]) -> np.ndarray:
        s = np.repeat(ENDMEMBERS[name][None, :], n, axis=0)
        for sl, lo, hi in parts:
            s[:, sl] *= rng.uniform(lo, hi, (n, 1))
        return s

    full = slice(0, len(S2_BANDS))
    spectra = {
        "green": scaled("green", [(_VIS, 0.85, 1.15), (_NIR, 0.9, 1.1), (_SWIR, 0.9, 1.1)]),
        "dry": scaled("dry", [(full, 0.85, 1.15)]),
        "flower": scaled("flower", [(full, 0.9, 1.1)]),
        "soil": ENDMEMBERS["soil"][None, :] * rng.lognormal(0.0, 0.18, (n, 1)),
        "urban": scaled("urban", [(full, 0.75, 1.4)]),
        "water": scaled("water", [(_VIS, 0.7, 1.8)]),
    }
    spectra["soil"][:, _SWIR] *= rng.uniform(0.9, 1.1, (n, 1))
    return SpectralTraits(spectra=spectra, moisture_response=rng.uniform(0.7, 1.3, n))


def wet_soil(traits: SpectralTraits, moisture: np.ndarray) -> np.ndarray:
    """Soil spectra (P, T, B) darkened by moisture: S (1 - k_b (m - m_res)/(m_sat - m_res))."""
    m = M_RES + (np.asarray(moisture)[None, :] - M_RES) * traits.moisture_response[:, None]
    wet = np.clip((m - M_RES) / (M_SAT - M_RES), 0.0, 1.0)
    return traits.spectra["soil"][:, None, :] * (1 - MOISTURE_DARKENING * wet[..., None])


def mixture(fr: Fractions, traits: SpectralTraits, moisture: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Parcel reflectance R (P, T, B) and its sensitivity D = f_green (S_green - S_soil) to a
    relative change of green cover (used for within-parcel vigour texture)."""
    soil = wet_soil(traits, moisture)
    sp = traits.spectra
    refl = fr.soil[..., None] * soil
    for name in ("green", "dry", "flower", "urban", "water"):
        refl = refl + getattr(fr, name)[..., None] * sp[name][:, None, :]
    contrast = fr.green[..., None] * (sp["green"][:, None, :] - soil)
    return refl, contrast

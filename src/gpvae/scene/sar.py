"""Sentinel-1 backscatter: water-cloud model over a moisture-driven soil, plus speckle.

sigma0 = A cos(theta) (1 - tau2) + tau2 sigma_soil, tau2 = exp(-2 B V / cos(theta))
(Attema & Ulaby 1978), V the canopy water content; bare soil brightens ~3 dB per 0.1 m3/m3
of moisture; urban is bright (double bounce), calm water dark (~ -20 dB VV) and wind-roughened
on some dates. Speckle is multiplicative Gamma with mean 1 and shape ENL.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gpvae.scene.phenology import Fractions, ParcelPhenology, vegetation_water_content
from gpvae.scene.weather import M_RES

#: Water-cloud parameters per polarisation: A (saturation), B (attenuation per kg/m2),
#: bare-soil dB at residual moisture, dB per m3/m3, urban and calm-water sigma0 (linear).
WCM: dict[str, dict[str, float]] = {
    "VV": dict(A=0.16, B=0.25, soil_db=-18.0, moist_db=30.0, urban=0.5, water=0.01),
    "VH": dict(A=0.045, B=0.15, soil_db=-26.5, moist_db=30.0, urban=0.06, water=0.0015),
}
#: Class factors: vertical cereal stems attenuate VV more; forest volume scattering is higher.
B_FACTOR = {"VV": {"winter_cereal": 1.8}, "VH": {}}
A_FACTOR = {"deciduous_forest": 1.4}
#: Urban-share backscatter factor: roads and tracks are smooth (specular), not buildings.
URBAN_FACTOR = {"road": 0.05}
#: Instrument noise floor (linear) added before speckle (S1 IW NESZ ~ -27 dB here).
NOISE_FLOOR = 0.002


@dataclasses.dataclass(frozen=True)
class SarTraits:
    """Per-parcel soil roughness (dB), urban orientation brightness per direction (P,) and
    the mean incidence angle (degrees) per orbit direction."""

    roughness_db: np.ndarray
    urban_gain: dict[str, np.ndarray]
    incidence: dict[str, float]


def draw_sar_traits(n: int, rng: np.random.Generator) -> SarTraits:
    """Roughness N(0, 1.5) dB, urban gain U(0.5, 2) per direction, incidence U(32, 45) deg."""
    return SarTraits(roughness_db=rng.normal(0.0, 1.5, n),
                     urban_gain={d: rng.uniform(0.5, 2.0, n) for d in ("ASC", "DES")},
                     incidence={d: float(rng.uniform(32.0, 45.0)) for d in ("ASC", "DES")})


def water_cloud(v: np.ndarray, sigma_soil: np.ndarray, theta_deg: float, a: np.ndarray,
                b: np.ndarray) -> np.ndarray:
    """Water-cloud model sigma0 = A cos(t) (1 - tau2) + tau2 sigma_soil (Attema & Ulaby 1978)."""
    cos = np.cos(np.radians(theta_deg))
    tau2 = np.exp(-2.0 * b * v / cos)
    return a * cos * (1.0 - tau2) + tau2 * sigma_soil


def parcel_sigma0(ph: ParcelPhenology, fr: Fractions, moisture: np.ndarray,
                  moisture_response: np.ndarray, traits: SarTraits, direction: str, pol: str,
                  wind: np.ndarray) -> np.ndarray:
    """Linear sigma0 (P, T) of every parcel: vegetated part by the water-cloud model, plus the
    urban and water shares; ``wind`` (T,) multiplies the water backscatter."""
    p = WCM[pol]
    theta = traits.incidence[direction]
    m = M_RES + (np.asarray(moisture)[None, :] - M_RES) * moisture_response[:, None]
    soil_db = (p["soil_db"] + p["moist_db"] * (m - M_RES) + traits.roughness_db[:, None]
               - 0.2 * (theta - 39.0))
    a = p["A"] * np.array([A_FACTOR.get(c, 1.0) for c in ph.classes])[:, None]
    b = p["B"] * np.array([B_FACTOR[pol].get(c, 1.0) for c in ph.classes])[:, None]
    veg = water_cloud(vegetation_water_content(ph, fr), 10 ** (soil_db / 10), theta, a, b)
    urban = (p["urban"] * traits.urban_gain[direction][:, None]
             * np.array([URBAN_FACTOR.get(c, 1.0) for c in ph.classes])[:, None])
    water = p["water"] * np.asarray(wind)[None, :]
    return (1.0 - fr.urban - fr.water) * veg + fr.urban * urban + fr.water * water


def speckle(sigma0: np.ndarray, enl: float, rng: np.random.Generator) -> np.ndarray:
    """Observed intensity: (sigma0 + noise floor) x Gamma(shape=ENL, scale=1/ENL) speckle."""
    return (sigma0 + NOISE_FLOOR) * rng.gamma(enl, 1.0 / enl, size=sigma0.shape)

"""Synthetic climate fields with extreme-weather boxes, written in the Extreme Weather layout
(ai500.data.weather: channels, classes, the native grid, the reader).

A synthetic sample is an H x W window of the native grid: its centre latitude is uniform in [-65, 65]
(limited so the window stays on the globe; the whole globe when H = 768), and `latitude` gives each
row's latitude. Every field is a zonal climatology plus smooth noise with P(k) ~ k^-3 (k in physical
units, flat beyond 6000 km wavelengths), physically tied together:

- TS = 255 + 46 cos^2(lat) K (minus 6.5 K/km over random orography), T500 = 235 + 33 cos^2, T200 =
  222 - 6 cos^2 (cold tropical tropopause), noise growing poleward; TREFHT = TS - 0.8 K + noise.
- Winds: 850 hPa trade easterlies and 45-degree westerlies, a Hadley/Ferrel meridional wind, plus the
  rotational wind of a random streamfunction psi (wind noise 5 m/s); PSL = 1013 hPa with subtropical
  highs and subpolar lows, plus the balanced part rho*f*psi (so extratropical noise has cyclonic and
  anticyclonic eddies, the tropics almost none) and a little unbalanced noise. UBOT/VBOT are the 850
  hPa wind times 0.75, turned 25 deg towards low pressure (left in the north, right in the south).
- PS from PSL and the orography (hypsometric); Z1000 and Z200 hypsometric from PSL and the layer
  temperatures; ZBOT the height of the lowest model level (sigma 0.9925) from TREFHT.
- Moisture: TMQ ~ 2600 * qsat(TS, PS) * PS/1e5 (~50 kg/m^2 at the equator, ~6 at 60 deg), QREFHT =
  relative humidity (0.8 +- noise) * qsat(TREFHT, PS), PRECT a log-normal field around an ITCZ and
  storm-track climatology (~7e-8 m/s = 6 mm/day at the ITCZ).

Events (DESIGN 6), 1.5 + 0.5 * (H*W / (160*240)) on average per window (Poisson, at most 15), each class
placed only where its latitude band crosses the window, vortices not overlapping:

- Vortices use a Holland profile tapered at an outer radius, p = PSL_env - dp * s(r), s(r) = (1 -
  exp(-(R_max/r)^B)) * exp(-(r/R_out)^2), with gradient winds at 850 hPa (counter-clockwise in the
  north, clockwise in the south) and hydrostatically consistent heights.
  Tropical depression (0): |lat| 5-30, dp 5-15 hPa, R_max 40-80 km, B 1.0-1.4, R_out 8 R_max.
  Tropical cyclone (1): |lat| 5-30, dp 25-80 hPa, R_max 30-60 km, B 1.3-1.7, R_out 8 R_max.
  Both: warm core (T500 +0.10 K/hPa * dp, T200 +0.16 K/hPa * dp), TMQ +(6 + 0.25 dp) kg/m^2, rain
  0.15 mm/h per hPa, in an eyewall ring with spiral bands as the storm organises, moist near-surface air
  cooled by the rain. TD and TC differ mainly by intensity (and so size of the rain ring and warm core).
  Extratropical cyclone (2): |lat| 35-65, dp 15-40 hPa, R_max 150-300 km, B 0.9-1.1, R_out 3 R_max;
  cold core aloft (T500 -0.12..-0.20 K/hPa * dp, centre 0.4 R_max upstream (west), warmer lowered
  tropopause at 200 hPa), a warm sector / cold sector surface dipole of 4-8 K, rain and moisture in the
  poleward-east (comma) sector.
- Atmospheric river (3): a moisture filament, TMQ +20-35 kg/m^2 at its equatorward end falling to 70 %
  at the poleward end, 2000-4000 km long, 300-900 km full width at half maximum, gently curved, pointing
  poleward-east at 20-60 deg from east, its midpoint at |lat| 20-50 (it may leave the window); a low-level
  jet of 8-15 m/s along it, rain rising towards the poleward end.

Unlabelled look-alikes just short of the label thresholds (as TECA's thresholds label the real data), so
that a detector must learn the thresholds rather than "any low" or "any moist filament": 1.0 + 0.5 *
(H*W / (160*240)) on average per window (Poisson), each a weak tropical disturbance, a weak mid-latitude
low or a moisture plume (weights 0.3, 0.35, 0.35, among those whose band crosses the window), placed clear
of every event before it (vortices the sum of their box radii apart; a filament 2.5 sigma of its width
from other filaments' centre lines and from a vortex's box radius), up to 8 tries each:

- Weak tropical disturbance: |lat| 3-30, dp 2-5 hPa, R_max 40-150 km, B 1.0-1.3, R_out 8 R_max, warm
  cored and moist like a TD (whose dp starts at 5).
- Weak mid-latitude low: |lat| 35-65, dp 4-12 hPa, R_max 150-300 km, B 0.9-1.1, R_out 3 R_max, a shallow
  cold core (T500 -0.06..-0.12 K/hPa * dp), sector dipole 1-4 K, comma TMQ +1-5 kg/m^2, rain 0.2-0.8 mm/h
  (an ETC needs dp >= 15).
- Moisture plume: a filament like a river (same widths, angles and latitudes) but 60 % short, 800-1800 km
  long with TMQ +8-35 kg/m^2, and 40 % long (2000-4000 km) but weak, TMQ +8-18 kg/m^2 (a river needs both
  >= 2000 km and >= 20); jet 4-10 m/s, rain 0.3-1.2 mm/h.

The box of a labelled event is the bounding box of the pixels where its defining anomaly (pressure deficit, or
the TMQ excess of a river) is at least 10 % of its peak, clipped to the window: about 3.7 R_max in
radius for tropical vortices, 3 R_max for extratropical ones. Sample i depends only on (seed, i), so a
rank can generate its own shard and the data do not depend on the rank count.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ai500.data import common
from ai500.data.weather import (
    CHANNELS,
    CLASSES,
    DLAT,
    DX_KM,
    DY_KM,
    GLOBAL_COLS,
    GLOBAL_ROWS,
    MAX_BOXES,
)
from ai500.errors import ConfigError
from ai500.hdf5 import open_h5

MAX_CENTRE_LATITUDE = 65.0  # |centre latitude| of a window

OMEGA = 7.292e-5  # 1/s, Earth's rotation
GRAVITY = 9.81  # m/s^2
HYPSOMETRIC = 287.04 / GRAVITY  # R_d / g, m/K
RHO_AIR = 1.15  # kg/m^3, boundary-layer air density
SIGMA_BOT = 0.9925  # pressure of the lowest model level / PS
WIND_NOISE = 5.0  # m/s, std of the streamfunction wind noise
NOISE_OUTER_SCALE_KM = 6000.0  # noise spectra flatten at wavelengths beyond this (synoptic scale)
BOT_TURNING = np.deg2rad(25.0)  # surface wind turned towards low pressure
BOT_FACTOR = 0.75  # surface / 850 hPa wind speed
EVENTS_BASE, EVENTS_PER_AREA = 1.5, 0.5  # Poisson mean of events = BASE + PER_AREA * H*W / (160*240)
CLASS_WEIGHTS = (0.25, 0.25, 0.3, 0.2)  # relative frequency of each class where all are allowed
LOOKALIKES_BASE, LOOKALIKES_PER_AREA = 1.0, 0.5  # Poisson mean of unlabelled look-alikes, as events
LOOKALIKE_WEIGHTS = (0.3, 0.35, 0.35)  # weak tropical disturbance, weak mid-latitude low, moisture plume
BOX_FRACTION = 0.1  # a box covers the pixels where the anomaly is >= this fraction of its peak
_MM_PER_HOUR = 1.0 / 3.6e6  # m/s
_CHUNK_BYTES = 4 << 20  # at most this much in one HDF5 chunk
_BLOCK_BYTES = 64 << 20  # generate and write at most this much at a time


@dataclass(frozen=True)
class VortexKind:
    """Parameter ranges of one kind of vortex (uniform draws)."""

    latitude: tuple[float, float]  # |latitude| of the centre, degrees
    dp: tuple[float, float]  # central pressure deficit, hPa
    rmax: tuple[float, float]  # radius of maximum wind, km
    holland_b: tuple[float, float]
    outer: float  # taper radius R_out / R_max
    tropical: bool  # warm core, ring rain (else cold core, frontal sectors)
    cold: tuple[float, float] = (0.12, 0.2)  # extratropical: T500 cooling aloft, K per hPa of dp
    dipole: tuple[float, float] = (4.0, 8.0)  # extratropical: warm/cold sector contrast, K
    wet: tuple[float, float] = (4.0, 10.0)  # extratropical: TMQ excess in the comma, kg/m^2
    rain: tuple[float, float] = (0.5, 2.0)  # extratropical: comma rain, mm/h


VORTICES = {
    0: VortexKind((5.0, 30.0), (5.0, 15.0), (40.0, 80.0), (1.0, 1.4), 8.0, True),
    1: VortexKind((5.0, 30.0), (25.0, 80.0), (30.0, 60.0), (1.3, 1.7), 8.0, True),
    2: VortexKind((35.0, 65.0), (15.0, 40.0), (150.0, 300.0), (0.9, 1.1), 3.0, False),
}
# Unlabelled look-alikes just short of the label thresholds (TD dp >= 5, ETC dp >= 15, AR >= 2000 km and
# TMQ excess >= 20): a detector has to learn the thresholds, not just "a low" or "a moist filament".
DISTURBANCE = VortexKind((3.0, 30.0), (2.0, 5.0), (40.0, 150.0), (1.0, 1.3), 8.0, True)
WEAK_LOW = VortexKind((35.0, 65.0), (4.0, 12.0), (150.0, 300.0), (0.9, 1.1), 3.0, False,
                      cold=(0.06, 0.12), dipole=(1.0, 4.0), wet=(1.0, 5.0), rain=(0.2, 0.8))
PLUME_SHORT = 0.6  # fraction of moisture plumes that are short (of any strength); the rest long but weak
PLUME_SHORT_LENGTH, PLUME_SHORT_TMQ = (800.0, 1800.0), (8.0, 35.0)  # km, kg/m^2
PLUME_WEAK_LENGTH, PLUME_WEAK_TMQ = (2000.0, 4000.0), (8.0, 18.0)
PLUME_JET = (4.0, 10.0)  # m/s
PLUME_RAIN = (0.3, 1.2)  # mm/h
FILAMENT_GAP = 2.5  # a look-alike keeps this many sigma of a filament away from other events
AR_LATITUDE = (20.0, 50.0)  # |latitude| of an atmospheric river's midpoint
AR_TMQ = (20.0, 35.0)  # kg/m^2, peak moisture excess
AR_LENGTH = (2000.0, 4000.0)  # km
AR_FWHM = (300.0, 900.0)  # km, full width at half maximum
AR_ANGLE = (20.0, 60.0)  # degrees from east, poleward
AR_JET = (8.0, 15.0)  # m/s, low-level jet along the river


@dataclass
class Event:
    """One event in a window: class (-1: unlabelled look-alike), centre or midpoint (pixels, row then
    column, continuous), latitude there, drawn parameters and, once drawn, its box (that of a look-alike
    is never written to the labels)."""

    cls: int
    row: float
    col: float
    lat: float
    params: dict[str, float] = field(default_factory=dict)
    box: tuple[int, int, int, int] | None = None

    @property
    def filament(self) -> bool:
        """A moisture filament (atmospheric river or unlabelled plume), else a vortex."""
        return "length" in self.params


# --- background --------------------------------------------------------------------------------


def window_latitudes(centre: float, height: int) -> np.ndarray:
    """Latitude (degrees) of the centre of each of `height` rows, row 0 southernmost."""
    return centre + (np.arange(height) + 0.5 - height / 2.0) * DLAT


def _qsat(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Saturation specific humidity (kg/kg) at temperature t (K) and pressure p (Pa) (Bolton 1980)."""
    es = 611.2 * np.exp(17.67 * (t - 273.15) / (t - 29.65))
    return 0.622 * es / (p - 0.378 * es)


def _noise(rng: np.random.Generator, height: int, width: int, lat_c: float,
           n_fields: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Smooth periodic noise on the window: wind (u, v) m/s with P(k) ~ k^-3 and std WIND_NOISE from a
    streamfunction psi (m^2/s), and n_fields unit-variance fields with P(k) ~ k^-3; all float32. The
    spectra flatten at wavelengths beyond NOISE_OUTER_SCALE_KM, so large windows (the whole globe) do
    not get planetary-scale eddies of unbounded amplitude."""
    ky = np.fft.fftfreq(height)[:, None] / (DY_KM * 1e3)  # cycles per metre
    kx = np.fft.rfftfreq(width)[None, :] / (DX_KM * 1e3 * max(np.cos(np.deg2rad(lat_c)), 0.05))
    k2 = ky**2 + kx**2 + (1.0 / (NOISE_OUTER_SCALE_KM * 1e3)) ** 2  # flat beyond the outer scale
    k2[0, 0] = np.inf  # no mean
    weight = np.full(kx.shape, 2.0)  # the rfft half plane counts the mirrored columns twice
    weight[0, 0] = 1.0
    if width % 2 == 0:
        weight[0, -1] = 1.0
    n = height * width

    def variance(amp: np.ndarray) -> float:  # of irfft2(amp * Z), Z with unit-variance parts
        return 2.0 * float((weight * np.abs(amp) ** 2).sum()) / n**2

    a3 = k2 ** -0.75
    a3 /= np.sqrt(variance(a3))
    psi = k2 ** -1.25
    au, av = -2j * np.pi * ky * psi, 2j * np.pi * kx * psi
    scale = WIND_NOISE / np.sqrt(0.5 * (variance(au) + variance(av)))
    z = rng.standard_normal((n_fields + 1, height, kx.size, 2), dtype=np.float32)
    z = z.view(np.complex64)[..., 0]
    spectra = np.concatenate([z[:1] * (scale * np.stack([au, av, psi])).astype(np.complex64),
                              z[1:] * a3.astype(np.float32)])
    out = np.fft.irfft2(spectra, s=(height, width)).astype(np.float32)
    return out[0], out[1], out[2], out[3:]


def _background(rng: np.random.Generator, lat: np.ndarray, width: int) -> dict[str, np.ndarray]:
    """Primary fields before events: PRECT, PSL, T200, T500, TS, TMQ, U850, V850 and the helpers RH
    (near-surface relative humidity), DTREF (TREFHT - TS) and OROG (surface height, m); float32."""
    height = lat.size
    lat = lat.astype(np.float32)
    phi = np.deg2rad(lat)[:, None]
    c2, s2, alat = np.cos(phi) ** 2, np.sin(phi) ** 2, np.abs(lat)[:, None]
    u, v, psi, (n_t, n_up, n_m, n_r, n_h, n_p, n_s) = _noise(
        rng, height, width, float(lat.mean()), 7)
    f = np.float32(2.0 * OMEGA) * np.sin(phi)

    orog = np.minimum(2000.0 * np.maximum(n_h - 1.2, 0.0) ** 1.5, 5000.0).astype(np.float32)
    psl = (101325.0 + 700.0 * np.exp(-(((alat - 30.0) / 10.0) ** 2))
           - 1500.0 * np.exp(-(((alat - 62.0) / 10.0) ** 2))
           - 300.0 * np.exp(-((lat[:, None] / 8.0) ** 2))
           + (80.0 + 250.0 * s2) * n_p + (RHO_AIR * f) * psi)
    ts = 255.0 + 46.0 * c2 + (0.8 + 4.0 * s2) * n_t - 0.0065 * orog
    t500 = 235.0 + 33.0 * c2 + (0.5 + 3.0 * s2) * (0.5 * n_t + 0.85 * n_up)
    t200 = 222.0 - 6.0 * c2 - (0.4 + 2.0 * s2) * 0.8 * n_up + 0.3 * n_s
    trades = 6.0 * np.exp(-((lat[:, None] / 14.0) ** 2))
    u850 = 10.0 * np.exp(-(((alat - 45.0) / 12.0) ** 2)) - trades + u
    v850 = np.where(alat < 60.0, -1.5 * np.sin(np.deg2rad(6.0 * lat))[:, None], 0.0) + v
    ps = _surface_pressure(psl, ts, orog)
    tmq = 2600.0 * _qsat(ts, ps) * (ps / 1e5) * np.exp(0.18 * n_m - 0.05)
    rh = np.clip(0.8 + 0.07 * n_m, 0.25, 1.0)
    clim = 1e-8 * (1.0 + 6.0 * np.exp(-(((lat[:, None] - 6.0) / 8.0) ** 2))
                   + 2.0 * np.exp(-(((alat - 45.0) / 10.0) ** 2)))
    prect = clim * np.exp(1.1 * (0.6 * n_r + 0.8 * n_m) - 0.605)
    out = {"PRECT": prect, "PSL": psl, "T200": t200, "T500": t500, "TS": ts, "TMQ": tmq, "U850": u850,
           "V850": v850, "RH": rh, "DTREF": -0.8 + 0.5 * n_s, "OROG": orog}
    return {k: np.array(np.broadcast_to(a, (height, width)), np.float32) for k, a in out.items()}


def _surface_pressure(psl: np.ndarray, ts: np.ndarray, orog: np.ndarray) -> np.ndarray:
    """PS from PSL over the orography, with the column's mean temperature (hypsometric)."""
    return psl * np.exp(-orog / (HYPSOMETRIC * (ts + 0.00325 * orog)))


def _derive(f: dict[str, np.ndarray], lat: np.ndarray) -> dict[str, np.ndarray]:
    """Add the fields that follow from the primaries: TREFHT, PS, QREFHT, UBOT, VBOT, Z1000, Z200, ZBOT."""
    orog = f["OROG"]
    trefht = f["TS"] + f["DTREF"]
    ps = _surface_pressure(f["PSL"], f["TS"], orog)
    qrefht = f["RH"] * _qsat(trefht, ps)
    turn = (BOT_TURNING * np.tanh(lat / 5.0)).astype(np.float32)[:, None]
    slow = BOT_FACTOR * (1.0 - 0.35 * np.minimum(orog / 2000.0, 1.0))
    cos_t, sin_t = np.cos(turn), np.sin(turn)
    t_sl = f["TS"] + 0.0065 * orog  # reduced to sea level
    z1000 = HYPSOMETRIC * t_sl * np.log(f["PSL"] / 1e5)
    z200 = z1000 + HYPSOMETRIC * (0.5 * np.log(2.0) * (t_sl + f["T500"])
                                  + 0.5 * np.log(2.5) * (f["T500"] + f["T200"]))
    return {**f, "TREFHT": trefht, "PS": ps, "QREFHT": qrefht,
            "UBOT": slow * (cos_t * f["U850"] - sin_t * f["V850"]),
            "VBOT": slow * (sin_t * f["U850"] + cos_t * f["V850"]),
            "Z1000": z1000, "Z200": z200,
            "ZBOT": HYPSOMETRIC * np.log(1.0 / SIGMA_BOT) * trefht * (1.0 + 0.61 * qrefht)}


# --- events ------------------------------------------------------------------------------------


def _vortex_profile(ev: Event) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radius (km), shape s(r) of the pressure deficit and the 850 hPa gradient wind (m/s) of a vortex."""
    p = ev.params
    rmax, rout = p["rmax"], p["rmax"] * p["outer"]
    r = np.linspace(0.0, 3.0 * rout, 600)
    with np.errstate(divide="ignore"):
        s = (1.0 - np.exp(-((rmax / r) ** p["b"]))) * np.exp(-((r / rout) ** 2))
    s[0] = 1.0
    dpdr = np.maximum(-np.gradient(s, r * 1e3) * p["dp"] * 100.0, 0.0)  # Pa/m
    f = abs(2.0 * OMEGA * np.sin(np.deg2rad(ev.lat)))
    rm = r * 1e3
    wind = np.sqrt(rm * dpdr / RHO_AIR + (rm * f / 2.0) ** 2) - rm * f / 2.0
    return r, s, wind


def _box_radius(ev: Event) -> float:
    """Radius (km) where a vortex's pressure deficit falls to BOX_FRACTION of its central value."""
    r, s, _ = _vortex_profile(ev)
    return float(r[np.argmax(s < BOX_FRACTION)])


def _draw_vortex(rng: np.random.Generator, cls: int, kind: VortexKind, row: float, col: float,
                 lat: float) -> Event:
    ev = Event(cls, row, col, lat, {
        "dp": rng.uniform(*kind.dp), "rmax": rng.uniform(*kind.rmax), "b": rng.uniform(*kind.holland_b),
        "outer": kind.outer, "tropical": float(kind.tropical)})
    ev.params["r10"] = _box_radius(ev)
    if kind.tropical:
        ev.params.update(moisture=rng.uniform(0.8, 1.2), band_phase=rng.uniform(0.0, 2.0 * np.pi))
    else:
        ev.params.update(cold=rng.uniform(*kind.cold), dipole=rng.uniform(*kind.dipole),
                         moisture=rng.uniform(*kind.wet), rain=rng.uniform(*kind.rain))
    return ev


def _draw_river(rng: np.random.Generator, row: float, col: float, lat: float, cls: int = 3,
                length: tuple[float, float] = AR_LENGTH, tmq: tuple[float, float] = AR_TMQ,
                jet: tuple[float, float] = AR_JET, rain: tuple[float, float] = (0.5, 2.0)) -> Event:
    angle = rng.uniform(*AR_ANGLE) * (1.0 if lat >= 0 else -1.0)
    length_km = rng.uniform(*length)
    return Event(cls, row, col, lat, {
        "tmq": rng.uniform(*tmq), "length": length_km, "sigma": rng.uniform(*AR_FWHM) / 2.3548,
        "angle": np.deg2rad(angle), "bend": rng.uniform(-0.12, 0.12) * length_km,
        "jet": rng.uniform(*jet), "rain": rng.uniform(*rain)})


def _draw_plume(rng: np.random.Generator, row: float, col: float, lat: float) -> Event:
    """An unlabelled moisture plume: short (of any strength) or long but weak."""
    short = rng.random() < PLUME_SHORT
    return _draw_river(rng, row, col, lat, -1, PLUME_SHORT_LENGTH if short else PLUME_WEAK_LENGTH,
                       PLUME_SHORT_TMQ if short else PLUME_WEAK_TMQ, PLUME_JET, PLUME_RAIN)


def _distance_km(a: Event, b: Event) -> float:
    cos = np.cos(np.deg2rad(0.5 * (a.lat + b.lat)))
    return float(np.hypot((a.row - b.row) * DY_KM, (a.col - b.col) * DX_KM * cos))


def _axis_km(ev: Event, cos: float) -> np.ndarray:
    """Points (n, 2) in km (east, north, from the window's corner) along a filament's centre line, or
    the centre of a vortex (1, 2); `cos` scales columns to km."""
    centre = np.array([[ev.col * DX_KM * cos, ev.row * DY_KM]])
    if not ev.filament:
        return centre
    p = ev.params
    along = np.linspace(-0.5, 0.5, 17) * p["length"]
    across = p["bend"] * (2.0 * along / p["length"]) ** 2
    ca, sa = np.cos(p["angle"]), np.sin(p["angle"])
    return centre + np.stack([along * ca - across * sa, along * sa + across * ca], axis=1)


def _overlaps(a: Event, b: Event) -> bool:
    """Whether look-alike `a` comes too close to event `b`: vortices closer than the sum of their box
    radii; a filament closer than FILAMENT_GAP sigma (plus the box radius of a vortex)."""
    if not (a.filament or b.filament):
        return _distance_km(a, b) < a.params["r10"] + b.params["r10"]
    cos = float(np.cos(np.deg2rad(0.5 * (a.lat + b.lat))))
    pa, pb = _axis_km(a, cos), _axis_km(b, cos)
    gap = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(axis=-1)).min()
    need = sum(FILAMENT_GAP * e.params["sigma"] if e.filament else e.params["r10"] for e in (a, b))
    return bool(gap < need)


def _scatter(rng: np.random.Generator, lat: np.ndarray, width: int,
             bands: list[tuple[float, float]], weights: tuple[float, ...], mean: float,
             draw: Callable[[int, float, float, float], Event],
             clashes: Callable[[Event], bool], events: list[Event]) -> None:
    """Append Poisson(`mean`) events (at most MAX_BOXES) to `events`: each of a kind drawn by
    `weights` among the kinds whose |latitude| band crosses the window, `draw(kind, row, col,
    latitude)` at a random row of its band and a random column, up to 8 tries for a spot where
    `clashes(event)` is False (else it is left out)."""
    alat = np.abs(lat)
    rows = [np.flatnonzero((alat >= lo) & (alat <= hi)) for lo, hi in bands]
    kinds = [k for k in range(len(bands)) if rows[k].size]
    n = min(MAX_BOXES, int(rng.poisson(mean))) if kinds else 0
    p = np.array([weights[k] for k in kinds])
    for _ in range(n):
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
        for _attempt in range(8):
            row = float(rng.choice(rows[kind])) + rng.random()
            col = float(rng.random() * width)
            event = draw(kind, row, col, float(lat[0] + (row - 0.5) * DLAT))
            if not clashes(event):
                events.append(event)
                break


def plan_events(rng: np.random.Generator, lat: np.ndarray, width: int) -> list[Event]:
    """Draw the events of a window with row latitudes `lat`: labelled ones first (at most MAX_BOXES),
    then unlabelled look-alikes (weak tropical disturbances, weak mid-latitude lows, moisture plumes),
    as many on average as labelled events and clear of every event placed before them."""
    height = lat.size
    events: list[Event] = []

    def draw_labelled(cls: int, row: float, col: float, here: float) -> Event:
        if cls == 3:
            return _draw_river(rng, row, col, here)
        return _draw_vortex(rng, cls, VORTICES[cls], row, col, here)

    def clashes_labelled(ev: Event) -> bool:
        if ev.cls == 3:
            return any(o.cls == 3 and _distance_km(ev, o) < 1500.0 for o in events)
        return any(o.cls != 3 and _distance_km(ev, o) < ev.params["r10"] + o.params["r10"]
                   for o in events)

    def draw_lookalike(kind: int, row: float, col: float, here: float) -> Event:
        if kind == 2:
            return _draw_plume(rng, row, col, here)
        return _draw_vortex(rng, -1, (DISTURBANCE, WEAK_LOW)[kind], row, col, here)

    labelled_mean = EVENTS_BASE + EVENTS_PER_AREA * height * width / (160.0 * 240.0)
    lookalike_mean = LOOKALIKES_BASE + LOOKALIKES_PER_AREA * height * width / (160.0 * 240.0)
    _scatter(rng, lat, width, [*(VORTICES[c].latitude for c in range(3)), AR_LATITUDE],
             CLASS_WEIGHTS, labelled_mean, draw_labelled, clashes_labelled, events)
    _scatter(rng, lat, width, [DISTURBANCE.latitude, WEAK_LOW.latitude, AR_LATITUDE],
             LOOKALIKE_WEIGHTS, lookalike_mean, draw_lookalike,
             lambda ev: any(_overlaps(ev, o) for o in events), events)
    return events


def _patch(row: float, col: float, ext_km: float, lat: np.ndarray,
           width: int) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """The window's pixels within ext_km of (row, col) as slices, and their east and north offsets (km)."""
    height = lat.size
    i0 = max(0, int(np.floor(row - ext_km / DY_KM)))
    i1 = min(height, int(np.ceil(row + ext_km / DY_KM)) + 1)
    if i0 >= i1:
        return None
    cos = np.maximum(np.cos(np.deg2rad(lat[i0:i1])), 0.02)
    half = ext_km / (DX_KM * cos.min())
    j0, j1 = max(0, int(np.floor(col - half))), min(width, int(np.ceil(col + half)) + 1)
    if j0 >= j1:
        return None
    y = ((np.arange(i0, i1) + 0.5 - row) * DY_KM)[:, None]
    x = (np.arange(j0, j1) + 0.5 - col)[None, :] * (DX_KM * cos)[:, None]
    y = np.broadcast_to(y, x.shape).astype(np.float32)
    return (slice(i0, i1), slice(j0, j1)), x.astype(np.float32), y


def _bounding_box(mask: np.ndarray, where: tuple[slice, slice]) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    i0, j0 = where[0].start, where[1].start
    return i0 + int(rows[0]), j0 + int(cols[0]), i0 + int(rows[-1]) + 1, j0 + int(cols[-1]) + 1


def _sector(az: np.ndarray, towards: float) -> np.ndarray:
    """Weight of the azimuthal sector around `towards` (radians from east): 1 there, 0 opposite."""
    return (0.5 * (1.0 + np.cos(az - towards))) ** 2


def _add_vortex(f: dict[str, np.ndarray], lat: np.ndarray, ev: Event) -> None:
    """Add a vortex's anomalies to the primary fields in place and set its box."""
    p = ev.params
    r_grid, s_grid, wind_grid = _vortex_profile(ev)
    big = (s_grid >= 0.005) | (wind_grid >= 0.3)
    ext = float(r_grid[min(np.flatnonzero(big)[-1] + 1, r_grid.size - 1)])
    patch = _patch(ev.row, ev.col, ext, lat, f["PSL"].shape[1])
    if patch is None:
        return
    w, x, y = patch
    r = np.hypot(x, y)
    s = np.interp(r, r_grid, s_grid).astype(np.float32)
    speed = np.interp(r, r_grid, wind_grid).astype(np.float32)
    hem = 1.0 if ev.lat >= 0 else -1.0
    dp, rmax = p["dp"], p["rmax"]
    r_safe = np.maximum(r, 1e-3)
    f["PSL"][w] -= dp * 100.0 * s
    f["U850"][w] -= hem * speed * y / r_safe  # counter-clockwise in the north
    f["V850"][w] += hem * speed * x / r_safe
    az = np.arctan2(y, x)
    if p["tropical"]:
        core = np.exp(-((r / (2.5 * rmax)) ** 2))
        f["T500"][w] += 0.10 * dp * core
        f["T200"][w] += 0.16 * dp * core
        f["TMQ"][w] += (6.0 + 0.25 * dp) * p["moisture"] * s
        organised = np.clip((dp - 10.0) / 30.0, 0.0, 1.0)
        ring = np.exp(-(((r - 1.2 * rmax) / (0.8 * rmax)) ** 2))
        blob = np.exp(-((r / (1.5 * rmax)) ** 2))
        bands = 0.5 * (1.0 + np.cos(2.0 * az - hem * 2.5 * np.log(r_safe / rmax) + p["band_phase"]))
        f["PRECT"][w] += (0.15 * dp * _MM_PER_HOUR) * (organised * ring + (1.0 - organised) * blob
                                                      + 0.4 * s * bands)
        f["RH"][w] = np.minimum(f["RH"][w] + 0.15 * s, 1.0)
        f["DTREF"][w] -= (0.5 + 0.02 * dp) * s
    else:
        upper = np.exp(-((np.hypot(x + 0.4 * rmax, y) / (1.2 * rmax)) ** 2))  # tilted west with height
        f["T500"][w] -= p["cold"] * dp * upper
        f["T200"][w] += 0.06 * dp * upper
        warm = np.cos(-hem * np.pi / 6), np.sin(-hem * np.pi / 6)  # warm sector: east, equatorward
        f["TS"][w] += (1.2 * p["dipole"]) * (x * warm[0] + y * warm[1]) / rmax * np.exp(
            -((r / (1.3 * rmax)) ** 2))
        comma = _sector(az, hem * np.pi / 4) * s  # poleward-east
        f["TMQ"][w] += p["moisture"] * _sector(az, 0.0) * s
        f["PRECT"][w] += (p["rain"] * _MM_PER_HOUR) * comma
        f["RH"][w] = np.minimum(f["RH"][w] + 0.1 * comma, 1.0)
    ev.box = _bounding_box(s >= BOX_FRACTION, w)


def _add_river(f: dict[str, np.ndarray], lat: np.ndarray, ev: Event) -> None:
    """Add a moisture filament's (river or plume) moisture, jet and rain in place and set its box."""
    p = ev.params
    length, sigma = p["length"], p["sigma"]
    patch = _patch(ev.row, ev.col, 0.5 * length + abs(p["bend"]) + 3.5 * sigma, lat, f["TMQ"].shape[1])
    if patch is None:
        return
    w, x, y = patch
    ca, sa = np.cos(p["angle"]), np.sin(p["angle"])
    along = x * ca + y * sa  # km from the midpoint, positive poleward-east
    across = -x * sa + y * ca - p["bend"] * (2.0 * along / length) ** 2
    ramp = 0.08 * length
    ends = 0.5 * (np.tanh((along + 0.5 * length) / ramp) - np.tanh((along - 0.5 * length) / ramp))
    shape = np.exp(-0.5 * (across / sigma) ** 2) * ends
    position = np.clip(along / length + 0.5, 0.0, 1.0)  # 0 equatorward end, 1 poleward end
    excess = p["tmq"] * (1.0 - 0.3 * position) * shape
    f["TMQ"][w] += excess
    f["U850"][w] += p["jet"] * ca * shape
    f["V850"][w] += p["jet"] * sa * shape
    f["PRECT"][w] += (p["rain"] * _MM_PER_HOUR) * position * shape
    f["RH"][w] = np.minimum(f["RH"][w] + 0.1 * shape, 1.0)
    f["T500"][w] += 1.0 * shape
    ev.box = _bounding_box(excess >= BOX_FRACTION * p["tmq"], w)


def sample(seed: int, index: int, height: int, width: int, events: bool = True,
           out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Event]]:
    """Sample `index` of set `seed`: fields (16, H, W) float32 (written into `out` if given), boxes
    (MAX_BOXES, 5) float32, row latitudes (H,) float32 and its events. events=False leaves the events
    out of the fields (the same background, for tests) but still returns them, boxes unset."""
    rng = np.random.default_rng([seed, index])
    half_span = 0.5 * height * DLAT
    limit = max(0.0, min(MAX_CENTRE_LATITUDE, 90.0 - half_span))
    lat = window_latitudes(rng.uniform(-limit, limit), height)
    planned = plan_events(rng, lat, width)
    f = _background(rng, lat, width)
    if events:
        for ev in planned:
            (_add_river if ev.filament else _add_vortex)(f, lat, ev)
    f = _derive(f, lat)
    boxes = np.full((MAX_BOXES, 5), -1.0, np.float32)
    labelled = [ev for ev in planned if ev.cls >= 0 and ev.box is not None]
    for k, ev in enumerate(labelled[:MAX_BOXES]):
        boxes[k] = (*ev.box, ev.cls)
    if out is None:
        out = np.empty((len(CHANNELS), height, width), np.float32)
    for c, name in enumerate(CHANNELS):
        out[c] = f[name]
    return out, boxes, lat.astype(np.float32), planned


def _check_shape(height: int, width: int) -> None:
    if not (16 <= height <= GLOBAL_ROWS and 16 <= width <= GLOBAL_COLS):
        raise ValueError(f"field size must be 16..{GLOBAL_ROWS} x 16..{GLOBAL_COLS}, "
                         f"got {height}x{width}")


def generate_samples(first: int, count: int, seed: int, height: int,
                     width: int) -> dict[str, np.ndarray]:
    """Samples [first, first+count) of set `seed` as H x W windows: `images` (count, 16, H, W) float32,
    `boxes` (count, 15, 5) float32 padded with -1 rows, `latitude` (count, H) float32 (degrees per row)."""
    _check_shape(height, width)
    if first < 0 or count < 1 or seed < 0:
        raise ValueError(f"need first >= 0, count >= 1, seed >= 0, got {first}, {count}, {seed}")
    images = np.empty((count, len(CHANNELS), height, width), np.float32)
    boxes = np.empty((count, MAX_BOXES, 5), np.float32)
    latitude = np.empty((count, height), np.float32)
    for k in range(count):
        _, boxes[k], latitude[k], _ = sample(seed, first + k, height, width, out=images[k])
    return {"images": images, "boxes": boxes, "latitude": latitude}


# --- files -------------------------------------------------------------------------------------


def write_split(path: Path, count: int, seed: int, height: int, width: int) -> None:
    """Write `count` samples of set `seed` to one HDF5 file in the Extreme Weather layout, a block of at
    most 64 MiB at a time; the file appears under `path` only when complete (`path`.tmp, then renamed)."""
    _check_shape(height, width)
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    sample_bytes = len(CHANNELS) * height * width * 4
    chunk = (1, len(CHANNELS) if sample_bytes <= _CHUNK_BYTES else 1, height, width)
    block = max(1, min(count, _BLOCK_BYTES // sample_bytes))
    try:
        with open_h5(tmp, "w") as f:
            images = f.create_dataset("images", (count, len(CHANNELS), height, width), np.float32,
                                      chunks=chunk)
            boxes = f.create_dataset("boxes", (count, MAX_BOXES, 5), np.float32)
            for start in range(0, count, block):
                part = generate_samples(start, min(block, count - start), seed, height, width)
                stop = start + part["boxes"].shape[0]
                images[start:stop] = part["images"]
                boxes[start:stop] = part["boxes"]
            f.attrs["channels"] = list(CHANNELS)
            f.attrs["classes"] = list(CLASSES)
            f.attrs["seed"] = seed
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def generate_dataset(out_dir: Path, n_train: int, n_val: int, seed: int, height: int,
                     width: int) -> list[Path]:
    """Write out_dir/train.h5 (n_train samples) and out_dir/val.h5 (n_val) of the dataset `seed` as
    height x width windows and return their paths; DataError rather than overwrite a file."""
    try:
        _check_shape(height, width)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return common.generate_dataset(
        out_dir, {"train": n_train, "val": n_val}, seed, ".h5",
        lambda path, count, split_seed: write_split(path, count, split_seed, height, width))

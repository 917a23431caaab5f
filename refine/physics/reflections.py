"""Reflection lists of one structure: symmetry-equivalent and coincident reflections merged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..radiation import Radiation
from .batch import CrystalBatch
from .forward import bragg_intensities, default_hkl
from .params import Instrument, ProfileParams

if TYPE_CHECKING:
    from pymatgen.core import Structure

#: Reflections whose 2θ agree within this many degrees are merged (as pymatgen's XRDCalculator does).
MERGE_TOL_DEG = 1e-5


def reflection_table(
    structure: Structure,
    instrument: Instrument,
    two_theta_max: float,
    two_theta_min: float = 0.0,
    profile: ProfileParams | None = None,
    tol: float = MERGE_TOL_DEG,
) -> list[dict[str, Any]]:
    """Merged reflection list at the instrument's primary wavelength (Kα1 for a tube doublet).

    Reflections with 2θ (degrees) equal within ``tol`` are merged: equivalents and accidental coincidences.
    Each row: h, k, l (a representative, preferring non-negative indices), d (Å), two_theta (degrees),
    multiplicity (number of reflections merged, Friedel mates included), f_squared (mean |F|², electrons²
    or fm²), intensity (summed m·|F|²·LP·PO·scale). Rows sorted by 2θ.
    """
    return reflection_tables([structure], instrument, two_theta_max, two_theta_min, profile, tol)[0]


def reflection_tables(
    structures: Sequence[Structure] | CrystalBatch,
    instrument: Instrument,
    two_theta_max: float,
    two_theta_min: float = 0.0,
    profile: ProfileParams | None = None,
    tol: float = MERGE_TOL_DEG,
) -> list[list[dict[str, Any]]]:
    """:func:`reflection_table` for many structures at once (one batched forward pass)."""
    lam = instrument.radiation.primary_wavelength
    radiation = Radiation((lam,), (1.0,), instrument.radiation.probe, instrument.radiation.name)
    inst = replace(instrument, radiation=radiation)
    batch = structures if isinstance(structures, CrystalBatch) else CrystalBatch.from_structures(structures)
    with torch.no_grad():
        hkl = default_hkl(batch, inst, two_theta_max, margin=0.0)
        refl = bragg_intensities(batch, inst, profile, hkl, two_theta_max)
    valid_all = refl.valid[:, :, 0].cpu().numpy()
    tt_all = refl.two_theta[:, :, 0].double().cpu().numpy()
    d_all = refl.d.double().cpu().numpy()
    m_all = refl.multiplicity.double().cpu().numpy()
    f_all = refl.f_squared[:, :, 0].double().cpu().numpy()
    i_all = refl.intensity[:, :, 0].double().cpu().numpy()
    h_all = refl.hkl.cpu().numpy()
    out = []
    for b in range(batch.batch_size):
        sel = valid_all[b] & (tt_all[b] >= two_theta_min) & (tt_all[b] <= two_theta_max)
        out.append(
            _merge(
                h_all[b][sel], d_all[b][sel], tt_all[b][sel], m_all[b][sel], f_all[b][sel], i_all[b][sel], tol
            )
        )
    return out


def _merge(
    hkls: np.ndarray,
    d: np.ndarray,
    tt: np.ndarray,
    mult: np.ndarray,
    fsq: np.ndarray,
    inten: np.ndarray,
    tol: float,
) -> list[dict[str, Any]]:
    if tt.size == 0:
        return []
    keys = np.round(tt / tol).astype(np.int64)
    uniq, inverse = np.unique(keys, return_inverse=True)
    n = len(uniq)
    count = np.bincount(inverse, minlength=n)
    m_sum = np.bincount(inverse, weights=mult, minlength=n)
    i_sum = np.bincount(inverse, weights=inten, minlength=n)
    f_sum = np.bincount(inverse, weights=fsq * mult, minlength=n)
    tt_mean = np.bincount(inverse, weights=tt, minlength=n) / count
    d_mean = np.bincount(inverse, weights=d, minlength=n) / count
    # representative: the Friedel mate with fewer negative indices, then the largest (h, k, l)
    flip = (hkls < 0).sum(1) > (-hkls < 0).sum(1)
    rep_all = np.where(flip[:, None], -hkls, hkls)
    score = (rep_all < 0).sum(1) * 1_000_000 - (rep_all[:, 0] * 10_000 + rep_all[:, 1] * 100 + rep_all[:, 2])
    order = np.lexsort((score, inverse))
    first = order[np.r_[0, np.nonzero(np.diff(inverse[order]))[0] + 1]]
    rep = rep_all[first]
    return [
        {
            "h": int(rep[i, 0]),
            "k": int(rep[i, 1]),
            "l": int(rep[i, 2]),
            "d": float(d_mean[i]),
            "two_theta": float(tt_mean[i]),
            "multiplicity": int(np.rint(m_sum[i])),
            "f_squared": float(f_sum[i] / m_sum[i]),
            "intensity": float(i_sum[i]),
        }
        for i in range(n)
    ]

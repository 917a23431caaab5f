"""Scattering table: X-ray form factors, anomalous terms and neutron scattering lengths per species.

Every species (element or ion, e.g. ``"Fe"``, ``"Fe3+"``, ``"O2-"``) has one integer index into a process-wide
table (:func:`species_index`). Batched tensors of species indices gather their coefficients from
:func:`scattering_tables`.

Form factors, with s = sinθ/λ = 1/(2d) in Å⁻¹:

* ``"wk95"`` (default): Waasmaier & Kirfel, Acta Cryst. A51, 416 (1995), as shipped by ``xraydb``:
  f0(s) = c + Σ_{i=1..5} a_i exp(−b_i s²); ions included.
* ``"pymatgen"``: the table of pymatgen's XRDCalculator (``atomic_scattering_params.json``, neutral atoms only):
  f0(s) = Z − 41.78214 s² Σ_{i=1..4} a_i exp(−b_i s²). Used to compare with pymatgen exactly.

Anomalous dispersion f′, f″ (electrons) comes from the Chantler tables in ``xraydb``; neutron coherent
scattering lengths b_c (fm) from ``periodictable``.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import StructureError

#: Mott–Bethe constant used by pymatgen: m e²/(8π² ε0 h²)… in Å⁻² units, as in pymatgen.
PYMATGEN_MOTT_BETHE = 41.78214
#: hc in eV·Å, for converting wavelength to photon energy.
HC_EV_ANGSTROM = 12398.419843320026

FORM_FACTOR_TABLES = ("wk95", "pymatgen")

_SPECIES_RE = re.compile(r"^([A-Z][a-z]?)(?:(\d*)([+-]))?$")


@dataclass(frozen=True)
class ScatteringTable:
    """Per-species coefficient arrays (numpy, index = species index)."""

    names: tuple[str, ...]
    z: np.ndarray  # (S,) atomic number of the element
    electrons: np.ndarray  # (S,) electron count (Z minus charge)
    wk_a: np.ndarray  # (S,5)
    wk_b: np.ndarray  # (S,5)
    wk_c: np.ndarray  # (S,)
    wk_ok: np.ndarray  # (S,) bool: WK95 coefficients present
    pmg_a: np.ndarray  # (S,4)
    pmg_b: np.ndarray  # (S,4)
    pmg_ok: np.ndarray  # (S,) bool: pymatgen coefficients present
    neutron_b: np.ndarray  # (S,) coherent scattering length, fm (periodictable)
    pmg_neutron_b: np.ndarray  # (S,) pymatgen NDCalculator's table, fm (NaN where absent)

    @property
    def index(self) -> dict[str, int]:
        return _index_of(self.names)


@functools.lru_cache(maxsize=4)
def _index_of(names: tuple[str, ...]) -> dict[str, int]:
    return {n: i for i, n in enumerate(names)}


def _pymatgen_params() -> dict[str, list[list[float]]]:
    import pymatgen.analysis.diffraction.xrd as xrd_module

    path = Path(xrd_module.__file__).with_name("atomic_scattering_params.json")
    return json.loads(path.read_text())


def _pymatgen_neutron() -> dict[str, float]:
    import pymatgen.analysis.diffraction.neutron as neutron_module

    path = Path(neutron_module.__file__).with_name("neutron_scattering_length.json")
    return {
        k: float(np.real(complex(v))) if not isinstance(v, (int, float)) else float(v)
        for k, v in json.loads(path.read_text()).items()
    }


_TABLE_LOCK = threading.Lock()


def get_table() -> ScatteringTable:
    """The process-wide scattering table (built once from xraydb, pymatgen data and periodictable).

    Thread-safe: the first call builds it under a lock (periodictable attaches its neutron tables lazily,
    and two threads doing so at once fail)."""
    with _TABLE_LOCK:
        return _build_table()


@functools.lru_cache(maxsize=1)
def _build_table() -> ScatteringTable:
    import periodictable
    import xraydb

    db = xraydb.get_xraydb()
    rows = db.query(db.tables["Waasmaier"]).all()
    names: list[str] = []
    z: list[int] = []
    charge: list[int] = []
    wk_a: list[list[float]] = []
    wk_b: list[list[float]] = []
    wk_c: list[float] = []
    wk_ok: list[bool] = []
    for r in rows:
        ion = str(r.ion)
        m = _SPECIES_RE.match(ion)
        q = 0
        if m and m.group(3):
            q = int(m.group(2) or 1) * (1 if m.group(3) == "+" else -1)
        names.append(ion)
        z.append(int(r.atomic_number))
        charge.append(q)
        wk_a.append([float(v) for v in json.loads(r.scale)])
        wk_b.append([float(v) for v in json.loads(r.exponents)])
        wk_c.append(float(r.offset))
        wk_ok.append(True)
    present = set(names)
    for zz in range(1, 99):
        sym = periodictable.elements[zz].symbol
        if sym not in present:
            names.append(sym)
            z.append(zz)
            charge.append(0)
            wk_a.append([0.0] * 5)
            wk_b.append([0.0] * 5)
            wk_c.append(0.0)
            wk_ok.append(False)
    pmg = _pymatgen_params()
    pmg_a = np.zeros((len(names), 4))
    pmg_b = np.zeros((len(names), 4))
    pmg_ok = np.zeros(len(names), dtype=bool)
    nb = np.zeros(len(names))
    pmg_nb = np.full(len(names), np.nan)
    pmg_n = _pymatgen_neutron()
    for i, (_name, zz) in enumerate(zip(names, z, strict=True)):
        sym = periodictable.elements[zz].symbol
        if sym in pmg:
            c = np.asarray(pmg[sym], dtype=float)
            pmg_a[i, : len(c)] = c[:, 0]
            pmg_b[i, : len(c)] = c[:, 1]
            pmg_ok[i] = True
        b_c = periodictable.elements[zz].neutron.b_c
        nb[i] = float(b_c) if b_c is not None else np.nan
        if sym in pmg_n:
            pmg_nb[i] = float(pmg_n[sym])
    return ScatteringTable(
        names=tuple(names),
        z=np.asarray(z, dtype=np.int64),
        electrons=np.asarray(z, dtype=float) - np.asarray(charge, dtype=float),
        wk_a=np.asarray(wk_a),
        wk_b=np.asarray(wk_b),
        wk_c=np.asarray(wk_c),
        wk_ok=np.asarray(wk_ok),
        pmg_a=pmg_a,
        pmg_b=pmg_b,
        pmg_ok=pmg_ok,
        neutron_b=nb,
        pmg_neutron_b=pmg_nb,
    )


def species_index(name: str) -> int:
    """Index of a species (``"Fe"``, ``"Fe3+"``, ``"O2-"``, ``"Fe0+"``) in the scattering table.

    Ions missing from the Waasmaier–Kirfel table fall back to the neutral element; unknown names raise
    :class:`StructureError`.
    """
    table = get_table()
    index = table.index
    key = str(name).strip()
    if key in index:
        return index[key]
    m = _SPECIES_RE.match(key)
    if m is None:
        # pymatgen-style "Fe3+,spin=5" or decorated names: keep the leading symbol+charge
        m2 = re.match(r"^([A-Z][a-z]?)(\d*[+-])?", key)
        if m2 is None:
            raise StructureError(f"unknown species {name!r}")
        m = _SPECIES_RE.match(m2.group(0))
        if m is None:
            raise StructureError(f"unknown species {name!r}")
    element = m.group(1)
    if m.group(3):
        charge = f"{int(m.group(2) or 1)}{m.group(3)}" if int(m.group(2) or 1) != 0 else ""
        if charge and f"{element}{charge}" in index:
            return index[f"{element}{charge}"]
    if element in index:
        return index[element]
    raise StructureError(f"unknown species {name!r} (no scattering data for element {element!r})")


def species_name(index: int) -> str:
    """The species name ("Fe3+") of a table index."""
    return get_table().names[int(index)]


def element_symbol(index: int) -> str:
    """The element symbol of a table index ("Fe" for "Fe3+")."""
    import periodictable

    return str(periodictable.elements[int(get_table().z[int(index)])].symbol)


@functools.lru_cache(maxsize=16)
def _tensors(table_name: str, dtype: torch.dtype, device: str) -> dict[str, Tensor]:
    t = get_table()
    dev = torch.device(device)
    if table_name == "wk95":
        return {
            "a": torch.as_tensor(t.wk_a, dtype=dtype, device=dev),
            "b": torch.as_tensor(t.wk_b, dtype=dtype, device=dev),
            "c": torch.as_tensor(t.wk_c, dtype=dtype, device=dev),
            "ok": torch.as_tensor(t.wk_ok, device=dev),
        }
    if table_name == "pymatgen":
        return {
            "a": torch.as_tensor(t.pmg_a, dtype=dtype, device=dev),
            "b": torch.as_tensor(t.pmg_b, dtype=dtype, device=dev),
            "z": torch.as_tensor(t.z, dtype=dtype, device=dev),
            "ok": torch.as_tensor(t.pmg_ok, device=dev),
        }
    raise StructureError(f"unknown form-factor table {table_name!r}; expected one of {FORM_FACTOR_TABLES}")


def check_species(species: Tensor, mask: Tensor, table_name: str) -> None:
    """Raise StructureError when a real atom has no coefficients in the chosen table."""
    ok = _tensors(table_name, torch.float64, str(species.device))["ok"]
    bad = mask & ~ok[species]
    if bool(bad.any()):
        names = sorted({species_name(int(i)) for i in species[bad].unique()})
        raise StructureError(f"no {table_name} form factors for {', '.join(names)}")


def form_factor(species: Tensor, s2: Tensor, table_name: str = "wk95") -> Tensor:
    """X-ray form factor f0 (electrons).

    species: (B,N) long; s2: (B,R) with s² = (sinθ/λ)² in Å⁻². Returns (B,R,N).
    """
    tab = _tensors(table_name, s2.dtype, str(s2.device))
    a = tab["a"][species]  # (B,N,K)
    b = tab["b"][species]
    # (B,R,1,1) * (B,1,N,K)
    e = torch.exp(-s2[:, :, None, None] * b[:, None, :, :])
    sm = (a[:, None, :, :] * e).sum(-1)  # (B,R,N)
    if table_name == "wk95":
        return sm + tab["c"][species][:, None, :]
    return tab["z"][species][:, None, :] - PYMATGEN_MOTT_BETHE * s2[:, :, None] * sm


def form_factor_numpy(name: str, s: np.ndarray, table_name: str = "wk95") -> np.ndarray:
    """f0 of one species at s = sinθ/λ (Å⁻¹), numpy convenience for tests and plots."""
    idx = torch.tensor([[species_index(name)]])
    s2 = torch.as_tensor(np.asarray(s, dtype=float) ** 2)[None, :]
    return form_factor(idx, s2, table_name)[0, :, 0].numpy()


def anomalous_terms(species: Tensor, wavelength: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """f′ and f″ (electrons, Chantler tables via xraydb) at one wavelength (Å), shaped like ``species``."""
    fp, fpp = _anomalous_table(float(wavelength))
    fp_t = torch.as_tensor(fp, dtype=dtype, device=species.device)
    fpp_t = torch.as_tensor(fpp, dtype=dtype, device=species.device)
    return fp_t[species], fpp_t[species]


@functools.lru_cache(maxsize=16)
def _anomalous_table(wavelength: float) -> tuple[np.ndarray, np.ndarray]:
    import periodictable
    import xraydb

    t = get_table()
    energy = HC_EV_ANGSTROM / wavelength
    fp = np.zeros(len(t.names))
    fpp = np.zeros(len(t.names))
    cache: dict[int, tuple[float, float]] = {}
    for i, zz in enumerate(t.z):
        zi = int(zz)
        if zi not in cache:
            sym = periodictable.elements[zi].symbol
            try:
                cache[zi] = (float(xraydb.f1_chantler(sym, energy)), float(xraydb.f2_chantler(sym, energy)))
            except Exception:  # element outside the Chantler table
                cache[zi] = (0.0, 0.0)
        fp[i], fpp[i] = cache[zi]
    return fp, fpp


def neutron_lengths(species: Tensor, dtype: torch.dtype, table_name: str = "wk95") -> Tensor:
    """Coherent neutron scattering length b_c (fm) per atom, shaped like ``species``.

    Default: ``periodictable`` (Sears 1992 with later updates); ``table_name="pymatgen"``: the table of
    pymatgen's NDCalculator (for exact comparison). Missing values are 0.
    """
    t = get_table()
    nb = torch.as_tensor(
        t.pmg_neutron_b if table_name == "pymatgen" else t.neutron_b, dtype=dtype, device=species.device
    )
    out = nb[species]
    return torch.nan_to_num(out, nan=0.0)


def form_factor_at(
    species: Tensor, s2: Tensor, table_name: str = "wk95", crystal_index: Tensor | None = None
) -> Tensor:
    """X-ray form factor f0 (electrons) for species (…,S) at s² (…) = (sinθ/λ)² in Å⁻²; returns (…,S).

    With ``crystal_index`` (T,), ``species`` is (B,S) per crystal and s² (T,) per reflection: returns (T,S) with
    the coefficients gathered once per crystal (no (T,S) species lookup).
    """
    tab = _tensors(table_name, s2.dtype, str(s2.device))
    if crystal_index is not None:
        # (T,K,S) layout: the sum over the K Gaussians adds K contiguous (T,S) slices
        a = tab["a"][species].transpose(1, 2).contiguous()  # (B,K,S)
        b = tab["b"][species].transpose(1, 2).contiguous()
        n_k, n_s = a.shape[1], a.shape[2]
        a_t = a.view(a.shape[0], -1).index_select(0, crystal_index).view(-1, n_k, n_s)
        b_t = b.view(b.shape[0], -1).index_select(0, crystal_index).view(-1, n_k, n_s)
        e = torch.exp(b_t * -s2[:, None, None]) * a_t
        sm = e[:, 0]
        for k in range(1, n_k):
            sm = sm + e[:, k]
        if table_name == "wk95":
            return sm + tab["c"][species].index_select(0, crystal_index)
        return tab["z"][species].index_select(0, crystal_index) - PYMATGEN_MOTT_BETHE * s2[:, None] * sm
    a = tab["a"][species]  # (…,S,K)
    b = tab["b"][species]
    sm = (a * torch.exp(-s2[..., None, None] * b)).sum(-1)
    if table_name == "wk95":
        return sm + tab["c"][species]
    return tab["z"][species] - PYMATGEN_MOTT_BETHE * s2[..., None] * sm

"""CrystalBatch: a batch of crystal structures as padded tensors with masks."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..errors import StructureError
from .scattering import species_index, species_name

if TYPE_CHECKING:
    from pymatgen.core import Structure


@dataclass
class CrystalBatch:
    """B structures of up to N atoms (padded; ``mask`` False on padding).

    lattice (B,3,3) Å, rows a, b, c; frac (B,N,3) fractional coordinates; species (B,N) long index into the
    scattering table (:func:`~xrdsolve.refine.physics.scattering.species_index`); occ (B,N) occupancy 0..1;
    b_iso (B,N) isotropic displacement B in Å²; mask (B,N) bool.
    """

    lattice: Tensor
    frac: Tensor
    species: Tensor
    occ: Tensor
    b_iso: Tensor
    mask: Tensor

    def __post_init__(self) -> None:
        b = self.lattice.shape[0]
        if self.lattice.shape != (b, 3, 3):
            raise StructureError(f"lattice must be (B,3,3), got {tuple(self.lattice.shape)}")
        n = self.frac.shape[1] if self.frac.ndim == 3 else -1
        if self.frac.shape != (b, n, 3):
            raise StructureError(f"frac must be (B,N,3) with B={b}, got {tuple(self.frac.shape)}")
        for name in ("species", "occ", "b_iso", "mask"):
            t = getattr(self, name)
            if tuple(t.shape) != (b, n):
                raise StructureError(f"{name} must be (B,N)=({b},{n}), got {tuple(t.shape)}")

    @property
    def batch_size(self) -> int:
        return int(self.lattice.shape[0])

    @property
    def n_atoms(self) -> int:
        """Padded number of atom entries N."""
        return int(self.frac.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.lattice.dtype

    @property
    def device(self) -> torch.device:
        return self.lattice.device

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> CrystalBatch:
        """A copy with float tensors converted to ``dtype`` and everything moved to ``device``."""
        out = {}
        for f in fields(self):
            t: Tensor = getattr(self, f.name)
            if t.is_floating_point() and dtype is not None:
                t = t.to(dtype=dtype)
            if device is not None:
                t = t.to(device=device)
            out[f.name] = t
        return CrystalBatch(**out)

    def select(self, index: Tensor | Sequence[int] | slice) -> CrystalBatch:
        """A sub-batch (rows picked by ``index``)."""
        return CrystalBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def from_structures(
        cls,
        structures: Sequence[Structure],
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> CrystalBatch:
        """Pad pymatgen Structures into a batch.

        Disordered sites become one entry per species with its occupancy. B_iso comes from the site property
        ``b_iso`` or ``B_iso`` (Å²), or ``U_iso``·8π², else 0. Species with an oxidation state use the ion's
        form factor when the table has it.
        """
        if len(structures) == 0:
            raise StructureError("no structures given")
        rows: list[tuple[np.ndarray, np.ndarray, list[int], list[float], list[float]]] = []
        for s in structures:
            rows.append(_structure_row(s))
        bsz = len(rows)
        n = max(len(r[1]) for r in rows)
        lattice = np.zeros((bsz, 3, 3))
        frac_a = np.zeros((bsz, n, 3))
        spec_a = np.zeros((bsz, n), dtype=np.int64)
        occ_a = np.zeros((bsz, n))
        b_a = np.zeros((bsz, n))
        mask_a = np.zeros((bsz, n), dtype=bool)
        for i, (lat, fr, sp_i, oc, bi) in enumerate(rows):
            m = len(fr)
            lattice[i] = lat
            frac_a[i, :m] = fr
            spec_a[i, :m] = sp_i
            occ_a[i, :m] = oc
            b_a[i, :m] = bi
            mask_a[i, :m] = True
        dev = torch.device(device) if device is not None else None
        return cls(
            lattice=torch.as_tensor(lattice, dtype=dtype, device=dev),
            frac=torch.as_tensor(frac_a, dtype=dtype, device=dev),
            species=torch.as_tensor(spec_a, device=dev),
            occ=torch.as_tensor(occ_a, dtype=dtype, device=dev),
            b_iso=torch.as_tensor(b_a, dtype=dtype, device=dev),
            mask=torch.as_tensor(mask_a, device=dev),
        )

    def to_structures(self) -> list[Structure]:
        """Back to pymatgen Structures; entries at the same position merge into one disordered site.

        B_iso is stored in the site property ``b_iso`` (Å²).
        """
        from pymatgen.core import Lattice, Structure

        out: list[Structure] = []
        lat = self.lattice.detach().cpu().double().numpy()
        frac = self.frac.detach().cpu().double().numpy()
        spec = self.species.detach().cpu().numpy()
        occ = self.occ.detach().cpu().double().numpy()
        biso = self.b_iso.detach().cpu().double().numpy()
        mask = self.mask.detach().cpu().numpy()
        for i in range(self.batch_size):
            sites: dict[tuple[float, float, float], dict[str, float]] = {}
            b_of: dict[tuple[float, float, float], float] = {}
            order: list[tuple[float, float, float]] = []
            for j in np.nonzero(mask[i])[0]:
                key = (
                    round(float(frac[i, j, 0]), 8),
                    round(float(frac[i, j, 1]), 8),
                    round(float(frac[i, j, 2]), 8),
                )
                if key not in sites:
                    sites[key] = {}
                    order.append(key)
                    b_of[key] = float(biso[i, j])
                name = species_name(int(spec[i, j]))
                sites[key][name] = sites[key].get(name, 0.0) + float(occ[i, j])
            out.append(
                Structure(
                    Lattice(lat[i]),
                    [sites[k] for k in order],
                    [list(k) for k in order],
                    site_properties={"b_iso": [b_of[k] for k in order]},
                )
            )
        return out


@functools.lru_cache(maxsize=4096)
def _species_index_cached(name: str) -> int:
    return species_index(name)


#: Scattering-table index of each pymatgen species object seen (Element/Species hash and compare by value).
_SPECIES_OF: dict[object, int] = {}

_B_KEYS = ("b_iso", "B_iso", "U_iso")


def _species_of(sp: object) -> int:
    idx = _SPECIES_OF.get(sp)
    if idx is None:
        idx = _species_index_cached(str(sp))
        if len(_SPECIES_OF) < 65536:
            _SPECIES_OF[sp] = idx
    return idx


def _structure_row(s: Structure) -> tuple[np.ndarray, np.ndarray, list[int], list[float], list[float]]:
    """(lattice (3,3) Å, frac (n,3), species indices, occupancies, B_iso Å²) of one structure, one pass over
    its sites; a disordered site gives one entry per species."""
    sites = s.sites
    if len(sites) == 0:
        raise StructureError("structure has no atoms")
    lattice = np.asarray(s.lattice.matrix, dtype=float)
    spec: list[int] = []
    occ: list[float] = []
    biso: list[float] = []
    coords: list[np.ndarray] = []
    for site in sites:
        props = site.properties
        b = _site_b_iso(props) if props and any(k in props for k in _B_KEYS) else 0.0
        fc = site.frac_coords
        for sp, o in site.species.items():
            spec.append(_species_of(sp))
            occ.append(float(o))
            biso.append(b)
            coords.append(fc)
    return lattice, np.array(coords, dtype=float), spec, occ, biso


def _site_b_iso(props: dict) -> float:
    for key in ("b_iso", "B_iso"):
        if props.get(key) is not None:
            return float(props[key])
    if props.get("U_iso") is not None:
        return float(props["U_iso"]) * 8.0 * math.pi**2
    return 0.0

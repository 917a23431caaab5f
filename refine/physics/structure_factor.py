"""Structure factors F(h) = Σ_j occ_j f_j(s) exp(−B_j s²) exp(2πi h·x_j), batched.

Reflections are processed as one flat list over the whole batch (no padding waste when cells differ in size);
form factors are evaluated once per distinct species of each crystal ("slots"), not once per atom.
"""

from __future__ import annotations

import math

import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor

from .batch import CrystalBatch
from .compile import compile_enabled, maybe_compiled
from .scattering import anomalous_terms, form_factor_at, neutron_lengths


def species_slots(species: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct species per crystal: (slot (B,N) long index of each atom's species slot, slot_species (B,S)).

    Padding atoms get slot 0 (their weight is zero anyway); unused slots repeat species of slot 0.
    """
    big = torch.iinfo(species.dtype).max
    sp = torch.where(mask, species, torch.full_like(species, big))
    sorted_sp, order = torch.sort(sp, dim=1)
    new = torch.ones_like(sorted_sp, dtype=torch.bool)
    new[:, 1:] = sorted_sp[:, 1:] != sorted_sp[:, :-1]
    slot_sorted = torch.cumsum(new.to(torch.int64), dim=1) - 1
    slot = torch.empty_like(slot_sorted).scatter_(1, order, slot_sorted)
    n_slots = max(1, int(torch.where(mask, slot + 1, torch.zeros_like(slot)).max()) if slot.numel() else 1)
    # padding atoms sort last and open one extra slot (index ≤ n_slots), dropped below
    slot_species = torch.zeros(species.shape[0], n_slots + 1, dtype=species.dtype, device=species.device)
    slot_species.scatter_(1, slot_sorted.clamp(max=n_slots), torch.where(sorted_sp == big, 0, sorted_sp))
    slot_species = slot_species[:, :n_slots]
    slot = torch.where(mask, slot, torch.zeros_like(slot))
    return slot, slot_species


def _weighted_phases(
    crystals: CrystalBatch, hkl: Tensor, crystal_index: Tensor, s2: Tensor, table: str, neutron: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(frac (T,3,N), 2πh (T,3), weight occ·exp(−B s²) (T,N), f·weight (T,N)) of a flat reflection list."""
    dtype = crystals.frac.dtype
    ci = crystal_index
    h2pi = hkl.to(dtype) * (2.0 * math.pi)
    frac = crystals.frac.transpose(1, 2).contiguous().index_select(0, ci)  # (T,3,N): rows x, y, z
    weight = (crystals.occ * crystals.mask.to(dtype)).index_select(0, ci)  # (T,N)
    if not _is_constant_zero(crystals.b_iso):
        weight = weight * torch.exp(-s2[:, None] * crystals.b_iso.index_select(0, ci))
    if neutron:
        f_atom = neutron_lengths(crystals.species, dtype, table).index_select(0, ci)
    else:
        slot, slot_species = species_slots(crystals.species, crystals.mask)
        f_slot = form_factor_at(slot_species, s2, table, crystal_index=ci)  # (T,S)
        f_atom = f_slot.gather(1, slot.index_select(0, ci))
    return frac, h2pi, weight, f_atom * weight


def _cos_sin(frac: Tensor, h2pi: Tensor) -> tuple[Tensor, Tensor]:
    phase = torch.addcmul(frac[:, 0] * h2pi[:, 0:1], frac[:, 1], h2pi[:, 1:2])
    phase = torch.addcmul(phase, frac[:, 2], h2pi[:, 2:3])  # (T,N) 2π h·x
    return torch.cos(phase), torch.sin(phase)


def _anomalous_weights(
    crystals: CrystalBatch, wavelength: float, weight: Tensor, crystal_index: Tensor
) -> tuple[Tensor, Tensor]:
    """f′·weight and f″·weight (T,N) at ``wavelength`` (Å)."""
    fp, fpp = anomalous_terms(crystals.species, wavelength, weight.dtype)  # (B,N)
    return fp.index_select(0, crystal_index) * weight, fpp.index_select(0, crystal_index) * weight


def structure_factor_flat(
    crystals: CrystalBatch,
    hkl: Tensor,
    crystal_index: Tensor,
    s2: Tensor,
    *,
    table: str = "wk95",
    neutron: bool = False,
    wavelength: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Real and imaginary parts of F (T,) for a flat list of T reflections.

    hkl: (T,3) integers; crystal_index: (T,) which crystal each reflection belongs to; s2: (T,) (sinθ/λ)² =
    1/(4d²) in Å⁻². Electrons (X-ray) or fm (neutron). With ``wavelength`` (Å) the anomalous terms
    f′ + i f″ at that wavelength are added (X-ray only).
    """
    frac, h2pi, weight, fw = _weighted_phases(crystals, hkl, crystal_index, s2, table, neutron)
    if wavelength is None and compile_enabled() and _plain(frac, fw, h2pi):
        return maybe_compiled(_sum_phases)(frac, h2pi, fw)
    cos, sin = _cos_sin(frac, h2pi)
    re = torch.linalg.vecdot(fw, cos)
    im = torch.linalg.vecdot(fw, sin)
    if wavelength is not None and not neutron:
        wp, wpp = _anomalous_weights(crystals, wavelength, weight, crystal_index)
        re = re + (wp * cos).sum(-1) - (wpp * sin).sum(-1)
        im = im + (wp * sin).sum(-1) + (wpp * cos).sum(-1)
    return re, im


def friedel_mean_f_squared_flat(
    crystals: CrystalBatch,
    hkl: Tensor,
    crystal_index: Tensor,
    s2: Tensor,
    *,
    wavelength: float,
    table: str = "wk95",
) -> Tensor:
    """(|F(h)|² + |F(−h)|²)/2 (T,) with the X-ray anomalous terms f′ + i f″ at ``wavelength`` (Å).

    h and −h always coincide in a powder pattern, so this mean times 2 is the pair's intensity and the
    reflections can stay enumerated over a half sphere. With A, B the cos/sin sums of (f₀ + f′)·w and A″, B″
    those of f″·w: F(±h) = (A ∓ B″) + i(±B + A″), so the mean is A² + B² + A″² + B″² (exact for any
    structure; Bijvoet differences cancel). Arguments as :func:`structure_factor_flat`.
    """
    frac, h2pi, weight, fw = _weighted_phases(crystals, hkl, crystal_index, s2, table, False)
    cos, sin = _cos_sin(frac, h2pi)
    wp, wpp = _anomalous_weights(crystals, wavelength, weight, crystal_index)
    f1 = fw + wp
    a, b = torch.linalg.vecdot(f1, cos), torch.linalg.vecdot(f1, sin)
    a2, b2 = torch.linalg.vecdot(wpp, cos), torch.linalg.vecdot(wpp, sin)
    return a * a + b * b + a2 * a2 + b2 * b2


def _sum_phases(frac: Tensor, h2pi: Tensor, fw: Tensor) -> tuple[Tensor, Tensor]:
    """Σ_j fw_j (cos, sin)(2π h·x_j) for frac (T,3,N), 2πh (T,3), fw (T,N) — the compiled kernel's body."""
    phase = frac[:, 0] * h2pi[:, 0:1] + frac[:, 1] * h2pi[:, 1:2] + frac[:, 2] * h2pi[:, 2:3]
    return (fw * torch.cos(phase)).sum(-1), (fw * torch.sin(phase)).sum(-1)


def _plain(*tensors: Tensor) -> bool:
    """True when no tensor needs a gradient or carries a forward-mode tangent."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return all(fwad.unpack_dual(t).tangent is None for t in tensors)


def _is_constant_zero(t: Tensor) -> bool:
    """True when ``t`` is all zeros and carries no gradient or forward-mode tangent."""
    if t.requires_grad or fwad.unpack_dual(t).tangent is not None:
        return False
    return not bool(t.any())


def structure_factor(
    crystals: CrystalBatch,
    hkl: Tensor,
    s2: Tensor,
    *,
    table: str = "wk95",
    neutron: bool = False,
    wavelength: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Real and imaginary parts of F (B,R) for padded reflections hkl (B,R,3) with s2 (B,R) in Å⁻²."""
    bsz, r = hkl.shape[:2]
    idx = torch.arange(bsz, device=hkl.device)[:, None].expand(bsz, r).reshape(-1)
    re, im = structure_factor_flat(
        crystals, hkl.reshape(-1, 3), idx, s2.reshape(-1), table=table, neutron=neutron, wavelength=wavelength
    )
    return re.view(bsz, r), im.view(bsz, r)


def structure_factor_squared(crystals: CrystalBatch, hkl: Tensor, s2: Tensor, **kw: object) -> Tensor:
    """|F|² (B,R); see :func:`structure_factor` for the arguments."""
    re, im = structure_factor(crystals, hkl, s2, **kw)  # type: ignore[arg-type]
    return re * re + im * im

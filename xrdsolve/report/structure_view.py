"""A static 2-D view of a crystal structure: the unit cell projected along one lattice axis.

Atoms (with their periodic images on the cell faces, edges and corners) are drawn as discs coloured by
element (Jmol colours), sized by atomic radius, painted back to front so nearer atoms overlap farther
ones; the 12 cell edges are drawn as lines. Pure matplotlib, no network, no 3-D toolkit.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from pymatgen.core import Structure

log = logging.getLogger(__name__)

AXES = {"a": 0, "b": 1, "c": 2}
#: Periodic images of a fractional coordinate within this distance of a cell face are drawn too.
FACE_TOL = 1e-3
_FALLBACK = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


@lru_cache(maxsize=1)
def _jmol_colours() -> dict[str, tuple[float, float, float]]:
    """Jmol element colours (RGB 0..1) from pymatgen's bundled table; empty when unavailable."""
    try:
        from importlib import resources

        from ruamel.yaml import YAML

        text = (resources.files("pymatgen.vis") / "ElementColorSchemes.yaml").read_text()
        table: dict[str, Any] = YAML(typ="safe").load(text)["Jmol"]
        return {el: (rgb[0] / 255, rgb[1] / 255, rgb[2] / 255) for el, rgb in table.items()}
    except Exception as exc:  # colours are cosmetic
        log.info("Jmol colours unavailable (%s); using a fallback palette", exc)
        return {}


def element_colour(symbol: str) -> Any:
    """Matplotlib colour of an element (Jmol scheme; a fixed palette for elements not in it)."""
    table = _jmol_colours()
    if symbol in table:
        return table[symbol]
    return _FALLBACK[sum(map(ord, symbol)) % len(_FALLBACK)]


def _radius(symbol: str) -> float:
    """Atomic radius in Å (pymatgen), 1.0 Å when unknown."""
    from pymatgen.core import Element

    try:
        r = Element(symbol).atomic_radius
    except ValueError:
        return 1.0
    return float(r) if r is not None else 1.0


def _site_symbol(site: Any) -> str:
    """Majority species of a (possibly disordered) site."""
    species = site.species
    best = max(species.items(), key=lambda kv: kv[1])[0]
    return str(getattr(best, "symbol", best))


def cell_images(frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fractional coordinates wrapped into [0, 1) plus their images on faces/edges/corners at 1.

    Returns (coordinates (M,3), index of the original site (M,)).
    """
    wrapped = np.mod(frac, 1.0)
    wrapped[np.isclose(wrapped, 1.0, atol=FACE_TOL)] = 0.0
    shifts = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    cand = wrapped[:, None, :] + shifts[None, :, :]  # (N, 8, 3)
    keep = np.all(cand <= 1.0 + FACE_TOL, axis=2)
    idx = np.nonzero(keep)
    return cand[idx], idx[0]


def _projection_basis(matrix: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal screen basis (2,3) perpendicular to lattice vector ``axis``, and the viewing direction."""
    view = matrix[axis] / np.linalg.norm(matrix[axis])
    # screen x along the next lattice vector's component perpendicular to the view
    other = matrix[(axis + 1) % 3]
    ex = other - (other @ view) * view
    ex /= np.linalg.norm(ex)
    ey = np.cross(view, ex)
    return np.stack([ex, ey]), view


def plot_structure_projection(
    structure: Structure,
    axis: str = "c",
    ax: Axes | None = None,
    title: str | None = None,
    scale: float = 0.45,
) -> Axes:
    """Draw ``structure`` projected along lattice vector ``axis`` ("a", "b" or "c"); returns the Axes.

    Atom disc radius = ``scale`` × atomic radius (Å, in data units, so sizes are true to the cell).
    The cell outline is the projection of the 12 edges of the unit cell.
    """
    from matplotlib.patches import Circle

    if axis not in AXES:
        raise ValueError(f"axis must be one of a, b, c (got {axis!r})")
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(4, 4)).add_subplot(1, 1, 1)
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    basis, view = _projection_basis(matrix, AXES[axis])

    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    edges = [(p, q) for p in range(8) for q in range(p + 1, 8) if np.abs(corners[p] - corners[q]).sum() == 1]
    xy_c = corners @ matrix @ basis.T
    for p, q in edges:
        ax.plot(xy_c[[p, q], 0], xy_c[[p, q], 1], "-", color="0.25", lw=0.8, zorder=1)

    frac = np.asarray(structure.frac_coords, dtype=float)
    symbols = [_site_symbol(s) for s in structure]
    coords, owner = cell_images(frac)
    cart = coords @ matrix
    xy = cart @ basis.T
    depth = cart @ view
    order = np.argsort(depth)  # far (small depth) first
    dmin, dmax = float(depth.min()), float(depth.max())
    span = max(dmax - dmin, 1e-9)
    for n, i in enumerate(order):
        sym = symbols[owner[i]]
        shade = 0.55 + 0.45 * (depth[i] - dmin) / span  # nearer atoms brighter
        colour = np.clip(np.asarray(element_colour(sym), dtype=float) * shade, 0, 1)
        ax.add_patch(
            Circle(
                (float(xy[i, 0]), float(xy[i, 1])),
                scale * _radius(sym),
                facecolor=colour,
                edgecolor="black",
                lw=0.5,
                zorder=2 + n,
            )
        )
    for sym in sorted(set(symbols)):
        ax.plot([], [], "o", color=element_colour(sym), mec="black", mew=0.5, label=sym)
    pad = scale * max(_radius(s) for s in set(symbols)) + 0.3
    allxy = np.vstack([xy_c, xy])
    ax.set_xlim(float(allxy[:, 0].min()) - pad, float(allxy[:, 0].max()) + pad)
    ax.set_ylim(float(allxy[:, 1].min()) - pad, float(allxy[:, 1].max()) + pad)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(set(symbols)), 6),
        frameon=False,
        markerscale=1.2,
    )
    ax.set_title(
        title if title is not None else f"{structure.composition.reduced_formula}, view along {axis}",
        fontsize=9,
    )
    return ax

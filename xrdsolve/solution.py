"""The answer of a solve: ranked, refined candidate structures with their fit statistics."""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymatgen.core import Composition, Element, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from .jsonio import json_default

log = logging.getLogger(__name__)


def spacegroup_symbol(structure: Structure, symprec: float = 0.1) -> tuple[str, int]:
    """Hermann–Mauguin symbol and number of ``structure``'s space group (tolerance Å)."""
    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        return sga.get_space_group_symbol(), int(sga.get_space_group_number())
    except Exception:  # spglib can fail on degenerate cells
        return "P1", 1


@dataclass
class Candidate:
    """One ranked candidate.

    Attributes
    ----------
    structure : the refined structure.
    rwp, rp, gof : fit statistics as fractions (Rwp 0.1 = 10 %).
    provenance : where the starting structure came from (``source`` generator/random/indexing, seed, …).
    result : the full refinement result (refine.RefinementResult) when kept.
    """

    rank: int
    structure: Structure
    rwp: float
    rp: float
    gof: float
    provenance: dict[str, Any] = field(default_factory=dict)
    score: float = math.nan
    result: Any = None

    @classmethod
    def from_result(
        cls, result: Any, provenance: dict[str, Any], rank: int = 0, score: float = math.nan
    ) -> Candidate:
        """A candidate from a refinement result (first phase's refined structure, its Rwp, Rp, GoF)."""
        return cls(
            rank=rank,
            structure=result.phases[0].structure,
            rwp=float(result.rwp),
            rp=float(result.rp),
            gof=float(result.gof),
            provenance=provenance,
            score=score,
            result=result,
        )

    @property
    def formula(self) -> str:
        """Reduced formula; with partial occupancies scaled so the fully occupied elements are integral
        (``Fe0.904O``, ``Li0.6CoO2``)."""
        return display_formula(self.structure.composition)

    @property
    def spacegroup(self) -> str:
        return spacegroup_symbol(self.structure)[0]

    def lattice_dict(self) -> dict[str, float]:
        lat = self.structure.lattice
        return {
            "a": lat.a,
            "b": lat.b,
            "c": lat.c,
            "alpha": lat.alpha,
            "beta": lat.beta,
            "gamma": lat.gamma,
            "volume": lat.volume,
        }

    def to_dict(self, cif: str | None = None) -> dict[str, Any]:
        symbol, number = spacegroup_symbol(self.structure)
        return {
            "rank": self.rank,
            "formula": self.formula,
            "spacegroup": symbol,
            "spacegroup_number": number,
            "lattice": self.lattice_dict(),
            "natoms": len(self.structure),
            "rwp": _finite(self.rwp),
            "rp": _finite(self.rp),
            "gof": _finite(self.gof),
            "score": _finite(self.score),
            "provenance": self.provenance,
            "cif": cif,
        }


def display_formula(comp: Composition) -> str:
    """``comp`` as a reduced formula; non-integral amounts (partial occupancy) kept to 3 decimals after
    dividing by the greatest common divisor of the integral ones."""
    amounts = {el.symbol: float(a) for el, a in comp.items()}
    integral = [round(a) for a in amounts.values() if abs(a - round(a)) < 1e-6 and round(a) > 0]
    if len(integral) == len(amounts):
        return comp.reduced_formula
    g = math.gcd(*integral) if integral else 1
    parts = []
    for el, a in sorted(amounts.items(), key=lambda kv: Element(kv[0]).X):
        x = a / g
        parts.append(el if abs(x - 1) < 5e-4 else f"{el}{x:.3f}".rstrip("0").rstrip("."))
    return "".join(parts)


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


@dataclass
class Solution:
    """Ranked candidates for one pattern, with what was tried.

    ``candidates`` are in rank order (best first). ``tried`` records the pipeline's stages
    (indexing results, Z values, candidate counts, timings); ``messages`` says what went wrong
    or what to be careful about (e.g. "no peaks found"). An empty ``candidates`` list is a valid
    answer: it means nothing fitted, and ``messages`` says why.
    """

    pattern: Any
    candidates: list[Candidate]
    tried: dict[str, Any] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    #: (folder name, refine.supercells.OrderDecision) per parent tested for defect ordering (--supercells)
    order_decisions: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (the content of summary.json without CIF paths)."""
        return {
            "source": str(getattr(self.pattern, "meta", {}).get("source", "")),
            "candidates": [c.to_dict() for c in self.candidates],
            # disorder plan, refined occupancies and the order/disorder decision (when one was made)
            "disorder": self.tried.get("disorder"),
            "tried": self.tried,
            "messages": self.messages,
            "options": self.options,
        }

    def to_cif(self, directory: str | Path, top: int | None = None) -> list[Path]:
        """Write ``rank01.cif``, ``rank02.cif``, … into ``directory``; returns the paths."""
        from pymatgen.io.cif import CifWriter

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for cand in self.candidates[: top or len(self.candidates)]:
            path = out / f"rank{cand.rank:02d}.cif"
            try:
                CifWriter(cand.structure, symprec=0.1).write_file(str(path))
            except Exception as exc:
                # spglib fails on some degenerate cells: write P1 rather than lose the file
                log.info("rank %d: symmetry not found (%s); CIF written in P1", cand.rank, exc)
                p1 = cand.structure.copy()
                for i, site in enumerate(p1):
                    site.label = f"{site.species.elements[0].symbol}{i + 1}"
                CifWriter(p1).write_file(str(path))
            paths.append(path)
        return paths

    def write(self, directory: str | Path, *, plot: bool = True) -> Path:
        """Write summary.json, the ranked CIFs and fit.png (best candidate) into ``directory``; with
        order/disorder decisions also ``order_parent<rank>/`` (disordered.cif, supercell_<label>.cif,
        order_decision.json) per tested parent."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        cif_paths = self.to_cif(out)
        summary = self.summary()
        for entry, path in zip(summary["candidates"], cif_paths, strict=False):
            entry["cif"] = path.name
        tmp = out / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, default=json_default))
        tmp.replace(out / "summary.json")
        if self.order_decisions:
            from xrdsolve.refine.supercells import write_order_outputs

            for folder, decision in self.order_decisions:
                try:
                    write_order_outputs(decision, out / folder)
                except Exception as exc:  # the summary and ranked CIFs are already on disk: keep them
                    log.warning("could not write %s: %s", out / folder, exc)
        if plot and self.best is not None and self.best.result is not None:
            try:
                self._figure().savefig(out / "fit.png", dpi=150)
            except Exception as exc:
                log.warning("could not draw %s: %s", out / "fit.png", exc)
        return out / "summary.json"

    def _figure(self):  # -> matplotlib Figure
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 5), layout="constrained")
        ax = fig.add_subplot()
        self.plot(ax=ax)
        return fig

    def plot(self, ax=None, rank: int = 1):  # -> matplotlib Axes
        """The observed/calculated/difference plot of one candidate (default the best)."""
        cand = self.candidates[rank - 1]
        if cand.result is None:
            raise ValueError("this candidate kept no refinement result to plot")
        return cand.result.plot(ax=ax)

    def table(self, top: int = 10) -> str:
        """The ranked candidates as a plain-text table."""
        lines = [
            f"{'rank':>4}  {'formula':<12} {'space group':<12} {'a':>8} {'b':>8} {'c':>8}  {'Rwp %':>7}  {'GoF':>6}  source"
        ]
        for c in self.candidates[:top]:
            lat = c.structure.lattice
            lines.append(
                f"{c.rank:>4}  {c.formula:<12} {c.spacegroup:<12} {lat.a:8.4f} {lat.b:8.4f} {lat.c:8.4f}"
                f"  {100 * c.rwp:7.2f}  {c.gof:6.2f}  {c.provenance.get('source', '?')}"
            )
        if not self.candidates:
            lines.append(
                "  (no candidate fitted: " + "; ".join(self.messages or ["no reason recorded"]) + ")"
            )
        return "\n".join(lines)

    def write_report(self, path: str | Path, top: int = 3, axis: str = "c") -> Path:
        """Write the self-contained HTML report (ranked table, Rietveld plot, projected structures of the
        ``top`` candidates along lattice ``axis``, provenance) to ``path``; returns the path."""
        from .report import write_report

        return write_report(self, path, top=top, axis=axis)

    def _repr_html_(self) -> str:
        """Notebook view: headline, ranked table, notes and the best fit plot inline (PNG, base64)."""
        from .report import template as t

        best = self.best
        if best is None:
            head = "no candidate fitted"
        else:
            head = (
                f"best {html.escape(best.formula)} {html.escape(best.spacegroup)}: Rwp {t.pct(best.rwp)} %, "
                f"Rp {t.pct(best.rp)} %, GoF {t.num(best.gof)}"
            )
        img = ""
        if best is not None and best.result is not None:
            buf = io.BytesIO()
            self._figure().savefig(buf, format="png", dpi=90)
            img = (
                '<img alt="Rietveld plot" src="data:image/png;base64,'
                + base64.b64encode(buf.getvalue()).decode()
                + '"/>'
            )
        return (
            f"<div class='xrdsolve-solution'><b>xrdsolve Solution</b> ({len(self.candidates)} candidates; {head})"
            f"{t.candidates_table(self.candidates, 20)}{t.messages_list(self.messages)}{img}</div>"
        )

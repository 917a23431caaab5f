"""The solve report: one self-contained HTML page (ranked candidates, Rietveld plot, structure views,
provenance) and the pieces the notebook views share with it."""

from .assemble import render_report, write_report
from .structure_view import plot_structure_projection

__all__ = ["plot_structure_projection", "render_report", "write_report"]

"""Structural types that refine accepts without importing the packages that define them."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .radiation import Geometry, Radiation


@runtime_checkable
class PatternLike(Protocol):
    """A measured powder pattern: 2θ in degrees (increasing), intensity and its standard uncertainty (counts
    or arbitrary units), the radiation (wavelengths Å) and the diffraction geometry.

    ``xrdsolve.conditioning.Pattern`` satisfies it; so does any object with these attributes.
    """

    @property
    def two_theta(self) -> np.ndarray: ...

    @property
    def intensity(self) -> np.ndarray: ...

    @property
    def sigma(self) -> np.ndarray | None: ...

    @property
    def radiation(self) -> Radiation | None: ...

    @property
    def geometry(self) -> Geometry: ...

"""Pattern and composition encoders: a 1-D conv net over the fixed Q grid, and an element-fraction MLP."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

#: Atomic numbers 1..N_ELEMENTS are embedded (index 0 = padding).
N_ELEMENTS = 100


class PatternEncoder(nn.Module):
    """(B, C, M) pattern on the fixed Q grid (channels: normalised intensity, coverage mask) → (B, dim).

    Strided convolutions keep the position (Q) information; the flattened feature map goes through a
    linear layer, so peak positions, not only peak shapes, reach the embedding.
    """

    def __init__(self, n_points: int = 2048, in_channels: int = 2, width: int = 64, dim: int = 256) -> None:
        super().__init__()
        chans = [in_channels, width // 2, width, width, width, width, width]
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(chans):
            layers += [nn.Conv1d(cin, cout, kernel_size=7, stride=2, padding=3), nn.GELU()]
        self.conv = nn.Sequential(*layers)
        n_out = n_points
        for _ in range(len(chans) - 1):
            n_out = (n_out + 1) // 2
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(width * n_out, dim), nn.GELU(), nn.Linear(dim, dim), nn.LayerNorm(dim)
        )
        self.n_points = n_points
        self.in_channels = in_channels
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.conv(x))


class CompositionEncoder(nn.Module):
    """Composition (B, N_ELEMENTS+1) element counts per cell (+ log atom count) → (B, dim)."""

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_ELEMENTS + 2, dim), nn.GELU(), nn.Linear(dim, dim))
        self.dim = dim

    @staticmethod
    def featurise(species: Tensor, mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """(B, N) atomic numbers with (B, N) mask → (B, N_ELEMENTS+2) element fractions and log N."""
        b = species.shape[0]
        frac = torch.zeros(b, N_ELEMENTS + 1, dtype=dtype, device=species.device)
        frac.scatter_add_(1, species.clamp(0, N_ELEMENTS) * mask, mask.to(dtype))
        n = mask.sum(1, keepdim=True).to(dtype).clamp_min(1)
        frac[:, 0] = 0.0
        return torch.cat([frac / n, torch.log(n)], dim=1)

    def forward(self, species: Tensor, mask: Tensor) -> Tensor:
        first = self.net[0]
        assert isinstance(first, nn.Linear)
        return self.net(self.featurise(species, mask.long(), first.weight.dtype))

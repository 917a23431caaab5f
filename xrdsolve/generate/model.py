"""The conditioned generator: pattern encoder + composition encoder + denoiser, with a learned null
pattern embedding for classifier-free guidance."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xrdsolve.conditioning.encoder import CompositionEncoder, PatternEncoder

from .config import GeneratorConfig
from .denoiser import Denoiser


class GeneratorModel(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        e = cfg.encoder
        cfg.denoiser.cond_dim = e.pattern_dim + e.composition_dim
        self.cfg = cfg
        self.pattern_encoder = PatternEncoder(e.n_points, 2, e.width, e.pattern_dim)
        self.composition_encoder = CompositionEncoder(e.composition_dim)
        self.null_pattern = nn.Parameter(torch.zeros(e.pattern_dim))
        self.denoiser = Denoiser(cfg.denoiser)

    def condition(
        self, pattern: Tensor | None, species: Tensor, mask: Tensor, drop: Tensor | None = None
    ) -> Tensor:
        """Condition vector (B, D) from the encoder input (B,2,M) (None = unconditional) and the composition.

        ``drop`` (B,) bool replaces the pattern embedding by the null embedding (classifier-free guidance).
        """
        b = species.shape[0]
        null = self.null_pattern[None].expand(b, -1)
        if pattern is None:
            p = null
        else:
            p = self.pattern_encoder(pattern)
            if drop is not None:
                p = torch.where(drop[:, None], null, p)
        return torch.cat([p, self.composition_encoder(species, mask)], dim=-1)

    def forward(
        self, species: Tensor, frac: Tensor, lat: Tensor, t: Tensor, cond: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        return self.denoiser(species, frac, lat, t, cond, mask)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

"""Decoders: latent (plus optional extra inputs) -> per-band observation location."""

from __future__ import annotations

from torch import Tensor, nn

from gpvae.models.encoders import mlp


class MLPDecoder(nn.Module):
    """loc = f(z) for an MLP f (``depth`` hidden layers; depth 0 = the linear map W z + b).

    Heteroscedastic decoders also return a raw per-element noise offset for the likelihood.
    """

    def __init__(self, in_dim: int, num_bands: int, hidden: int, *, depth: int = 2,
                 heteroscedastic: bool = False) -> None:
        super().__init__()
        self.num_bands = num_bands
        self.depth = depth
        self.heteroscedastic = heteroscedastic
        self.net = mlp(in_dim, hidden, num_bands * (2 if heteroscedastic else 1), depth=depth)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        """z (..., in_dim) -> loc (..., C), raw noise offset (..., C) or None."""
        out = self.net(z)
        if self.heteroscedastic:
            loc, raw = out.split(self.num_bands, dim=-1)
            return loc, raw
        return out, None

    @property
    def is_linear(self) -> bool:
        """True when loc = W z + b exactly (no hidden layer, homoscedastic)."""
        return self.depth == 0 and not self.heteroscedastic

    def linear_moments(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        """Moments of W z + b for z ~ N(mean, diag var): (W mean + b, W² var). Linear only."""
        if not self.is_linear:
            raise RuntimeError("linear_moments needs a linear homoscedastic decoder (depth 0)")
        lin = self.net[-1]
        return lin(mean), var @ (lin.weight ** 2).T

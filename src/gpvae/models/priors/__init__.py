"""GP prior approximations: exact, sparse (inducing dates), markov (state space), banded."""

from __future__ import annotations

import gpytorch

from gpvae.errors import InputError
from gpvae.models.priors.banded import BandedGPPosterior
from gpvae.models.priors.base import GPPrior, LatentPosterior
from gpvae.models.priors.exact import ExactGPPrior

PRIORS = ("exact", "sparse", "markov")


def make_prior(name: str, kernel: gpytorch.kernels.Kernel, **kw) -> GPPrior:
    """GP prior approximation by name: ``exact`` | ``sparse`` | ``markov``."""
    if name == "exact":
        return ExactGPPrior(kernel, **kw)
    if name == "sparse":
        from gpvae.models.priors.sparse import SparseGPPrior
        return SparseGPPrior(kernel, **kw)
    if name == "markov":
        from gpvae.models.priors.markov import MarkovGPPrior
        return MarkovGPPrior(kernel, **kw)
    raise InputError(f"unknown GP prior approximation {name!r}", field="prior",
                     fix=f"use one of: {', '.join(PRIORS)}")


__all__ = ["PRIORS", "BandedGPPosterior", "ExactGPPrior", "GPPrior", "LatentPosterior",
           "make_prior"]

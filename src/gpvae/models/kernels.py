"""GP kernels over time (days) with one independent set of hyperparameters per latent dim.

Every positive hyperparameter (length scales, variances, periods) is stored as its logarithm
(``LogPositive``): Adam then moves it by a roughly constant *relative* step, so a length scale
starting at 30 days reaches 15 or 120 days in a few hundred steps (a softplus of raw days
moves it by ~lr days per step, i.e. not at all in practice).
"""

from __future__ import annotations

import gpytorch
import torch

from gpvae.errors import InputError

KERNELS = ("matern12", "matern32", "matern52", "rbf", "rq", "cauchy", "quasi_periodic")


def log_positive() -> gpytorch.constraints.Positive:
    """Positivity by the exponential: value = exp(raw), raw = log(value)."""
    return gpytorch.constraints.Positive(transform=torch.exp, inv_transform=torch.log)

_MATERN_NU = {"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}


def _base_kernel(name: str, batch: torch.Size, learn_period: bool) -> gpytorch.kernels.Kernel:
    """The unscaled kernel called ``name`` (see :func:`make_kernel`), default values."""
    if name in _MATERN_NU:
        return gpytorch.kernels.MaternKernel(nu=_MATERN_NU[name], batch_shape=batch,
                                             lengthscale_constraint=log_positive())
    if name == "rbf":
        return gpytorch.kernels.RBFKernel(batch_shape=batch,
                                          lengthscale_constraint=log_positive())
    if name in ("rq", "cauchy"):
        k = gpytorch.kernels.RQKernel(batch_shape=batch, lengthscale_constraint=log_positive(),
                                      alpha_constraint=log_positive())
        if name == "cauchy":  # Cauchy kernel = RQ with alpha fixed to 1
            k.raw_alpha.requires_grad_(False)
        return k
    per = gpytorch.kernels.PeriodicKernel(batch_shape=batch,
                                          lengthscale_constraint=log_positive())
    per.raw_period_length.requires_grad_(learn_period)
    env = gpytorch.kernels.MaternKernel(nu=1.5, batch_shape=batch,
                                        lengthscale_constraint=log_positive())
    return gpytorch.kernels.ProductKernel(per, env)


def _set_base(k: gpytorch.kernels.Kernel, name: str, lengthscale: float, period: float,
              periodic_lengthscale: float, alpha: float) -> None:
    """Initial values of the base kernel's hyperparameters (in its dtype)."""
    if name == "quasi_periodic":
        per, env = k.kernels
        per.period_length = period
        per.lengthscale = periodic_lengthscale
        env.lengthscale = lengthscale
        return
    if name in ("rq", "cauchy"):
        k.alpha = 1.0 if name == "cauchy" else alpha
    k.lengthscale = lengthscale


def make_kernel(name: str, num_latents: int, *, lengthscale: float = 30.0,
                outputscale: float = 1.0, period: float = 365.25,
                periodic_lengthscale: float = 1.0, alpha: float = 1.0,
                learn_period: bool = False, bias: float = 0.0,
                dtype: torch.dtype = torch.float32) -> gpytorch.kernels.Kernel:
    """Scaled stationary kernel ``sigma^2 k(t - t') [+ b^2]`` with batch_shape ``(num_latents,)``.

    ``bias`` > 0 adds a constant component b^2 (initial value ``bias``, learned): the pixel's
    own level, so that the posterior in a long gap reverts to the pixel's level instead of
    the population's (one more state in the Markov form).

    ``matern12/32/52``: Matern nu = 1/2, 3/2, 5/2; ``rbf``; ``rq`` (rational quadratic,
    ``(1 + r^2 / (2 alpha l^2))^-alpha``); ``cauchy`` = RQ with alpha = 1 fixed;
    ``quasi_periodic`` = Scale(Periodic(period) x Matern32(lengthscale)) for the yearly
    cycle, where the periodic factor is gpytorch's ``exp(-2 sin^2(pi tau / p) / l_p)``
    (note: gpytorch divides by ``l_p``, not ``l_p^2``) with ``l_p = periodic_lengthscale``.
    The period is fixed unless ``learn_period``. ``lengthscale`` is in days. Values are set
    in ``dtype`` (float64 kernels hold exactly the given values).
    """
    if name not in KERNELS:
        raise InputError(f"unknown kernel {name!r}", field="kernel",
                         fix=f"use one of: {', '.join(KERNELS)}")
    batch = torch.Size([num_latents])
    base = _base_kernel(name, batch, learn_period).to(dtype)
    _set_base(base, name, lengthscale, period, periodic_lengthscale, alpha)
    kernel = gpytorch.kernels.ScaleKernel(base, batch_shape=batch,
                                          outputscale_constraint=log_positive()).to(dtype)
    kernel.outputscale = outputscale
    if bias > 0:
        const = gpytorch.kernels.ConstantKernel(batch_shape=batch,
                                                constant_constraint=log_positive()).to(dtype)
        const.constant = torch.full((num_latents,), float(bias), dtype=dtype)
        kernel = gpytorch.kernels.AdditiveKernel(kernel, const)
    kernel.gpvae_name = name
    return kernel


def kernel_name(kernel: gpytorch.kernels.Kernel) -> str:
    """Short name of one gpytorch kernel module (``scale``, ``matern32``, ``periodic``...)."""
    if isinstance(kernel, gpytorch.kernels.MaternKernel):
        return {0.5: "matern12", 1.5: "matern32", 2.5: "matern52"}[kernel.nu]
    names = {gpytorch.kernels.ScaleKernel: "scale", gpytorch.kernels.RBFKernel: "rbf",
             gpytorch.kernels.RQKernel: "rq", gpytorch.kernels.PeriodicKernel: "periodic",
             gpytorch.kernels.ProductKernel: "product", gpytorch.kernels.AdditiveKernel: "sum",
             gpytorch.kernels.ConstantKernel: "bias"}
    return names.get(type(kernel), type(kernel).__name__.lower())


def kernel_hyperparameters(kernel: gpytorch.kernels.Kernel) -> dict[str, torch.Tensor]:
    """Constrained hyperparameters, ``"<kernel>.<name>" -> (L,)`` detached values for logs."""
    out: dict[str, torch.Tensor] = {}
    for module in kernel.modules():
        if not isinstance(module, gpytorch.kernels.Kernel):
            continue
        for raw_name in module._parameters:
            if not raw_name.startswith("raw_"):
                continue
            name = raw_name[len("raw_"):]
            value = getattr(module, name).detach()
            key = f"{kernel_name(module)}.{name}"
            out[key] = value.reshape(*module.batch_shape, -1)[..., 0]
    return out


def outputscale(kernel: gpytorch.kernels.Kernel) -> torch.Tensor:
    """Prior variance ``k(0)`` per latent dim, shape (L,): the scale of a scaled kernel plus
    the variance of a bias component (all our base kernels have unit variance)."""
    if isinstance(kernel, gpytorch.kernels.AdditiveKernel):
        return sum(outputscale(k) for k in kernel.kernels)
    if isinstance(kernel, gpytorch.kernels.ScaleKernel):
        return kernel.outputscale
    if isinstance(kernel, gpytorch.kernels.ConstantKernel):
        return kernel.constant.reshape(kernel.batch_shape)
    p = next(kernel.parameters())
    return torch.ones(kernel.batch_shape, dtype=p.dtype, device=p.device)

"""GP kernels over time (days) with one independent set of hyperparameters per latent dim."""

from __future__ import annotations

import gpytorch
import torch

from gpvae.errors import InputError

KERNELS = ("matern12", "matern32", "matern52", "rbf", "rq", "cauchy", "quasi_periodic")

_MATERN_NU = {"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}


def _base_kernel(name: str, batch: torch.Size, lengthscale: float, period: float,
                 periodic_lengthscale: float, alpha: float, learn_period: bool
                 ) -> gpytorch.kernels.Kernel:
    """The unscaled kernel called ``name`` (see :func:`make_kernel`)."""
    if name in _MATERN_NU:
        k = gpytorch.kernels.MaternKernel(nu=_MATERN_NU[name], batch_shape=batch)
    elif name == "rbf":
        k = gpytorch.kernels.RBFKernel(batch_shape=batch)
    elif name in ("rq", "cauchy"):
        k = gpytorch.kernels.RQKernel(batch_shape=batch)
        k.alpha = 1.0 if name == "cauchy" else alpha
        if name == "cauchy":  # Cauchy kernel = RQ with alpha fixed to 1
            k.raw_alpha.requires_grad_(False)
    else:  # quasi_periodic
        per = gpytorch.kernels.PeriodicKernel(batch_shape=batch)
        per.period_length = period
        per.lengthscale = periodic_lengthscale
        per.raw_period_length.requires_grad_(learn_period)
        env = gpytorch.kernels.MaternKernel(nu=1.5, batch_shape=batch)
        env.lengthscale = lengthscale
        return gpytorch.kernels.ProductKernel(per, env)
    k.lengthscale = lengthscale
    return k


def make_kernel(name: str, num_latents: int, *, lengthscale: float = 30.0,
                outputscale: float = 1.0, period: float = 365.25,
                periodic_lengthscale: float = 1.0, alpha: float = 1.0,
                learn_period: bool = False) -> gpytorch.kernels.Kernel:
    """Scaled stationary kernel ``sigma^2 k(t - t')`` with batch_shape ``(num_latents,)``.

    ``matern12/32/52``: Matern nu = 1/2, 3/2, 5/2; ``rbf``; ``rq`` (rational quadratic,
    ``(1 + r^2 / (2 alpha l^2))^-alpha``); ``cauchy`` = RQ with alpha = 1 fixed;
    ``quasi_periodic`` = Scale(Periodic(period) x Matern32(lengthscale)) for the yearly
    cycle, where the periodic factor is gpytorch's ``exp(-2 sin^2(pi tau / p) / l_p)``
    (note: gpytorch divides by ``l_p``, not ``l_p^2``) with ``l_p = periodic_lengthscale``.
    The period is fixed unless ``learn_period``. ``lengthscale`` is in days.
    """
    if name not in KERNELS:
        raise InputError(f"unknown kernel {name!r}", field="kernel",
                         fix=f"use one of: {', '.join(KERNELS)}")
    batch = torch.Size([num_latents])
    base = _base_kernel(name, batch, lengthscale, period, periodic_lengthscale, alpha,
                        learn_period)
    kernel = gpytorch.kernels.ScaleKernel(base, batch_shape=batch)
    kernel.outputscale = outputscale
    kernel.gpvae_name = name
    return kernel


def kernel_name(kernel: gpytorch.kernels.Kernel) -> str:
    """Short name of one gpytorch kernel module (``scale``, ``matern32``, ``periodic``...)."""
    if isinstance(kernel, gpytorch.kernels.MaternKernel):
        return {0.5: "matern12", 1.5: "matern32", 2.5: "matern52"}[kernel.nu]
    names = {gpytorch.kernels.ScaleKernel: "scale", gpytorch.kernels.RBFKernel: "rbf",
             gpytorch.kernels.RQKernel: "rq", gpytorch.kernels.PeriodicKernel: "periodic",
             gpytorch.kernels.ProductKernel: "product"}
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
    """Prior variance ``k(0)`` per latent dim, shape (L,) (all our kernels have unit base)."""
    if isinstance(kernel, gpytorch.kernels.ScaleKernel):
        return kernel.outputscale
    p = next(kernel.parameters())
    return torch.ones(kernel.batch_shape, dtype=p.dtype, device=p.device)

"""Markov (state-space) GP prior: Kalman filter + RTS smoother, O(N) per pixel.

Hartikainen & Särkkä (2010); Särkkä & Solin (2019); parallel-scan form of Särkkä &
García-Fernández (2021). Layout: per-step matrices (B, L, N, D, D), states (B, L, N, D).
Step 0 starts from the stationary prior: A_0 = 0, Q_0 = P_inf. Masked steps only predict.
"""

from __future__ import annotations

import gpytorch
import torch
from torch import Tensor

from gpvae.errors import InputError
from gpvae.models.priors.base import (
    LOG_2PI,
    GPPrior,
    LatentPosterior,
    clean_sites,
    clean_times,
    site_kl,
)
from gpvae.models.priors.scan import associative_scan
from gpvae.models.statespace import NUM_HARMONICS, StateSpace, state_space

SCANS = ("sequential", "parallel", "auto")
#: With scan "auto" on CPU, the parallel scan is used for at least this many dates and at most
#: this many (pixel, latent) series per call; otherwise the sequential loop, whose per-date
#: overhead is shared by the whole batch (break-even measured on a 2-core CPU: 64 dates;
#: 256-512 series; benchmarks/bench_priors.py --scans).
AUTO_PARALLEL_STEPS = 64
AUTO_PARALLEL_SERIES = 256
AUTO_PARALLEL_STATE_DIM = 3  # Matern; the scan's D x D solves make larger states slower


def _sym(P: Tensor) -> Tensor:
    return 0.5 * (P + P.mT)


def _mv(M: Tensor, v: Tensor) -> Tensor:
    return (M @ v.unsqueeze(-1)).squeeze(-1)


def _steps(x: Tensor, dim: int) -> tuple[Tensor, ...]:
    """Per-date slices of ``x`` along ``dim``, split once: indexing x[:, :, n] in a loop would
    make each step's backward materialise a zero tensor the size of x (O(N^2) backward)."""
    return x.unbind(dim)


def kalman_filter(A: Tensor, Q: Tensor, H: Tensor, y: Tensor, r: Tensor, obs: Tensor
                  ) -> tuple[Tensor, Tensor]:
    """Sequential Kalman filter: filtered means (B, L, N, D) and covariances (B, L, N, D, D).

    H (L, D); y, r (B, L, N) site means/variances; obs (B, 1, N) bool (False: predict only).
    """
    m = A.new_zeros(A.shape[:2] + A.shape[-1:])
    P = A.new_zeros(A.shape[:2] + A.shape[-2:])
    ms, Ps = [], []
    steps = zip(*(_steps(x, 2) for x in (A, Q)), *(_steps(x, -1) for x in (y, r, obs)),
                strict=True)
    for A_n, Q_n, y_n, r_n, obs_n in steps:
        m = _mv(A_n, m)
        P = _sym(A_n @ P @ A_n.mT + Q_n)
        Ph = _mv(P, H)
        S = (H * Ph).sum(-1) + r_n
        w = torch.where(obs_n, 1.0 / S, 0.0)
        v = y_n - (H * m).sum(-1)
        m = m + Ph * (w * v).unsqueeze(-1)
        P = _sym(P - w[..., None, None] * Ph.unsqueeze(-1) * Ph.unsqueeze(-2))
        ms.append(m)
        Ps.append(P)
    return torch.stack(ms, 2), torch.stack(Ps, 2)


def _filter_op(ei: tuple[Tensor, ...], ej: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Associative combination of filtering elements (A, b, C, eta, J) (Särkkä 2021, eq. 13)."""
    Ai, bi, Ci, etai, Ji = ei
    Aj, bj, Cj, etaj, Jj = ej
    eye = torch.eye(Ai.shape[-1], dtype=Ai.dtype, device=Ai.device)
    M = eye + Ci @ Jj
    x = torch.linalg.solve(M, torch.cat([Ai, Ci, (bi + _mv(Ci, etaj)).unsqueeze(-1)], -1))
    d = Ai.shape[-1]
    MA, MC, Mb = x[..., :d], x[..., d:2 * d], x[..., 2 * d]
    z = torch.linalg.solve(M.mT, torch.cat([Jj @ Ai, (etaj - _mv(Jj, bi)).unsqueeze(-1)], -1))
    NJA, Neta = z[..., :d], z[..., d]
    return (Aj @ MA, _mv(Aj, Mb) + bj, _sym(Aj @ MC @ Aj.mT + Cj),
            _mv(Ai.mT, Neta) + etai, _sym(Ai.mT @ NJA + Ji))


def parallel_kalman_filter(A: Tensor, Q: Tensor, H: Tensor, y: Tensor, r: Tensor,
                           obs: Tensor) -> tuple[Tensor, Tensor]:
    """Kalman filter as a parallel associative scan; same inputs/outputs as kalman_filter."""
    Qh = _mv(Q, H[:, None])
    S = (H[:, None] * Qh).sum(-1) + r
    w = torch.where(obs, 1.0 / S, 0.0)
    K = Qh * w.unsqueeze(-1)
    hA = _mv(A.mT, H[:, None])  # A^T h, (B, L, N, D)
    elems = (A - K.unsqueeze(-1) * hA.unsqueeze(-2),
             K * y.unsqueeze(-1),
             _sym(Q - K.unsqueeze(-1) * Qh.unsqueeze(-2)),
             hA * (w * y).unsqueeze(-1),
             w[..., None, None] * hA.unsqueeze(-1) * hA.unsqueeze(-2))
    out = associative_scan(_filter_op, tuple(e.movedim(2, 0) for e in elems))
    return out[1].movedim(0, 2), out[2].movedim(0, 2)


def predictions(A: Tensor, Q: Tensor, m: Tensor, P: Tensor) -> tuple[Tensor, Tensor]:
    """One-step predictions m_n^- = A_n m_{n-1}, P_n^- = A_n P_{n-1} A_n^T + Q_n (all n)."""
    m_prev = torch.cat([torch.zeros_like(m[:, :, :1]), m[:, :, :-1]], 2)
    P_prev = torch.cat([torch.zeros_like(P[:, :, :1]), P[:, :, :-1]], 2)
    return _mv(A, m_prev), _sym(A @ P_prev @ A.mT + Q)


def log_evidence(m_pred: Tensor, P_pred: Tensor, H: Tensor, y: Tensor, r: Tensor,
                 obs: Tensor) -> Tensor:
    """Prediction error decomposition: sum_n log N(y_n; H m_n^-, H P_n^- H^T + r_n), (B, L)."""
    mean = (H[:, None] * m_pred).sum(-1)
    var = (H[:, None] * _mv(P_pred, H[:, None])).sum(-1) + r
    ll = -0.5 * (LOG_2PI + torch.log(var) + (y - mean) ** 2 / var)
    return torch.where(obs, ll, 0.0).sum(-1)


def smoothing_elements(A: Tensor, Q: Tensor, m: Tensor, P: Tensor
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """RTS elements E_k = P_k A_{k+1}^T (P_{k+1}^-)^-1, g_k = m_k - E_k A_{k+1} m_k,
    L_k = P_k - E_k A_{k+1} P_k; last step E = 0, g = m, L = P."""
    A1, Q1 = A[:, :, 1:], Q[:, :, 1:]
    m0, P0 = m[:, :, :-1], P[:, :, :-1]
    AP = A1 @ P0
    P_pred = _sym(AP @ A1.mT + Q1)
    E = torch.linalg.solve(P_pred, AP).mT
    g = m0 - _mv(E @ A1, m0)
    Lk = _sym(P0 - E @ AP)
    return (torch.cat([E, torch.zeros_like(E[:, :, :1])], 2),
            torch.cat([g, m[:, :, -1:]], 2), torch.cat([Lk, P[:, :, -1:]], 2))


def rts_smoother(E: Tensor, g: Tensor, Lk: Tensor) -> tuple[Tensor, Tensor]:
    """Sequential RTS: m^s_k = g_k + E_k m^s_{k+1}, P^s_k = L_k + E_k P^s_{k+1} E_k^T."""
    Es, gs, Ls = _steps(E, 2), _steps(g, 2), _steps(Lk, 2)
    m, P = gs[-1], Ls[-1]
    ms, Ps = [m], [P]
    for k in range(g.shape[2] - 2, -1, -1):
        m = gs[k] + _mv(Es[k], m)
        P = _sym(Ls[k] + Es[k] @ P @ Es[k].mT)
        ms.append(m)
        Ps.append(P)
    return torch.stack(ms[::-1], 2), torch.stack(Ps[::-1], 2)


def _smooth_op(ei: tuple[Tensor, ...], ej: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Combination of smoothing elements (E, g, L) (Särkkä & García-Fernández 2021, eq. 19)."""
    Ei, gi, Li = ei
    Ej, gj, Lj = ej
    return Ei @ Ej, _mv(Ei, gj) + gi, _sym(Ei @ Lj @ Ei.mT + Li)


def parallel_rts_smoother(E: Tensor, g: Tensor, Lk: Tensor) -> tuple[Tensor, Tensor]:
    """RTS smoother as a reverse parallel associative scan."""
    out = associative_scan(_smooth_op, (E.movedim(2, 0), g.movedim(2, 0), Lk.movedim(2, 0)),
                           reverse=True)
    return out[1].movedim(0, 2), out[2].movedim(0, 2)


class MarkovGPPrior(GPPrior):
    """GP prior in state-space form (Matern 1/2, 3/2, 5/2; quasi-periodic with J harmonics).

    ``scan``: ``sequential`` (Python loop over dates), ``parallel`` (associative scan,
    O(log N) depth), ``auto`` = parallel on CUDA, and on CPU for >= 64 dates, <= 256
    (pixel, latent) series per call and a state of dimension <= 3 (Matern kernels).
    ``num_harmonics`` = J of the periodic expansion (quasi_periodic only; state dim
    2 (2J + 1)).
    """

    def __init__(self, kernel: gpytorch.kernels.Kernel, jitter: float = 1e-6,
                 scan: str = "auto", num_harmonics: int = NUM_HARMONICS) -> None:
        super().__init__(kernel, jitter)
        if scan not in SCANS:
            raise InputError(f"unknown scan {scan!r}", field="scan",
                             fix=f"use one of: {', '.join(SCANS)}")
        self.scan, self.num_harmonics = scan, num_harmonics
        self.state_space()  # fail early for kernels without a state space

    def state_space(self) -> StateSpace:
        return state_space(self.kernel, self.num_harmonics)

    def _parallel(self, device: torch.device, n_series: int, n_steps: int,
                  state_dim: int) -> bool:
        if self.scan == "auto":  # the scan's fewer, larger ops win on GPU and for few long
            return device.type == "cuda" or (  # low-dimensional series on CPU
                n_steps >= AUTO_PARALLEL_STEPS and n_series <= AUTO_PARALLEL_SERIES
                and state_dim <= AUTO_PARALLEL_STATE_DIM)
        return self.scan == "parallel"

    def _smooth(self, t: Tensor, mask: Tensor, y: Tensor, r: Tensor, smooth: bool = True
                ) -> tuple[Tensor | None, Tensor | None, Tensor]:
        """Marginals (B, N, L) at sorted-or-not dates t and log Z (B,); r includes jitter."""
        t = clean_times(t)
        order = torch.argsort(t, dim=1, stable=True)
        t = torch.gather(t, 1, order)
        obs = torch.gather(mask, 1, order).unsqueeze(1)
        idx = order.unsqueeze(-1).expand(-1, -1, y.shape[-1])
        y = torch.gather(y, 1, idx).transpose(1, 2)
        r = torch.gather(r, 1, idx).transpose(1, 2)
        ss = self.state_space()
        dt = torch.diff(t, dim=1, prepend=t[:, :1]).clamp_min(0.0).unsqueeze(1)
        A = ss.transition(dt)
        A = torch.cat([torch.zeros_like(A[:, :, :1]), A[:, :, 1:]], 2)
        Q = ss.process_noise(A)
        parallel = self._parallel(t.device, y.shape[0] * y.shape[1], t.shape[1], ss.dim)
        run_filter = parallel_kalman_filter if parallel else kalman_filter
        m, P = run_filter(A, Q, ss.H, y, r, obs)
        log_z = log_evidence(*predictions(A, Q, m, P), ss.H, y, r, obs).sum(-1)
        if not smooth:
            return None, None, log_z
        elems = smoothing_elements(A, Q, m, P)
        m, P = (parallel_rts_smoother if parallel else rts_smoother)(*elems)
        H = ss.H[:, None]
        mean = (H * m).sum(-1).transpose(1, 2)
        var = (H * _mv(P, H)).sum(-1).transpose(1, 2)
        var = torch.maximum(var, self.jitter_var())
        inv = torch.argsort(order, dim=1).unsqueeze(-1).expand_as(mean)
        return torch.gather(mean, 1, inv), torch.gather(var, 1, inv), log_z

    def _sites(self, mask: Tensor, site_mean: Tensor, site_var: Tensor) -> tuple[Tensor, Tensor]:
        mu, s2 = clean_sites(mask, site_mean, site_var)
        return mu, s2 + self.jitter_var()

    def posterior(self, t: Tensor, mask: Tensor, site_mean: Tensor, site_var: Tensor
                  ) -> LatentPosterior:
        mu, s2 = self._sites(mask, site_mean, site_var)
        mean, var, log_z = self._smooth(t, mask, mu, s2)
        return LatentPosterior(mean=mean, var=var, kl=site_kl(mean, var, mask, mu, s2, log_z))

    def predict(self, t: Tensor, mask: Tensor, site_mean: Tensor, site_var: Tensor,
                t_query: Tensor) -> tuple[Tensor, Tensor]:
        mu, s2 = self._sites(mask, site_mean, site_var)
        n_q = t_query.shape[1]
        pad = mu.new_zeros(mu.shape[0], n_q, mu.shape[2])
        mean, var, _ = self._smooth(torch.cat([t, t_query.to(t)], 1),
                                    torch.cat([mask, mask.new_zeros(mask.shape[0], n_q)], 1),
                                    torch.cat([mu, pad], 1), torch.cat([s2, pad + 1.0], 1))
        return mean[:, -n_q:], var[:, -n_q:]

    def log_marginal(self, t: Tensor, mask: Tensor, y: Tensor, noise_var: Tensor) -> Tensor:
        mu, s2 = self._sites(mask, y, noise_var)
        return self._smooth(t, mask, mu, s2, smooth=False)[2]

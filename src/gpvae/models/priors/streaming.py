"""New acquisitions without recomputing the past: the Markov prior's filter state, updated.

A pixel's :class:`StreamState` holds, per latent, the Kalman filter's state (mean and
covariance of the state-space vector) at its last observed date K, and the products: the
posterior mean and variance of the latent at the reference dates. New sites (dates >= K)
update it (:func:`stream_update`):

1. the forward filter runs from the state at K through the new dates (and the reference
   dates after K, predict-only);
2. the RTS smoother runs backward over that segment only, down to K: the smoothed state at K
   changes by (Δm, ΔP);
3. a reference date r before K is revised exactly, without revisiting the past: the RTS
   recursion gives Δm_r = E_r ... E_{K-1} Δm and ΔP_r = (E_r ... E_{K-1}) ΔP (...)^T (the
   filtered terms before K do not depend on later data), so each past reference date keeps
   a gain vector u_r = (E_r ... E_{K-1})^T H^T per latent: mean_r += u_r . Δm,
   var_r += u_r^T ΔP u_r; the gains are carried to the new last date by the segment's
   product of E.

The cost of an update is that of the new dates plus O(R D^2) per pixel, whatever the length
of the past; the result equals a smoother over all dates (old and new) up to rounding
(tests/test_streaming.py). The first state is an update of the empty state (the stationary
prior, nothing observed) with all the data. Dates before K are not accepted (they are left
out and counted): recompute to include late-arriving acquisitions.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import Tensor

from gpvae.models.priors.markov import MarkovGPPrior, _mv, _sym


@dataclasses.dataclass
class StreamState:
    """Filter state and products of B pixels, L latents, state dimension D, R reference dates
    (times in the pixels' frame: days since their time origin)."""

    t_last: Tensor  # (B,) float64: the last observed date; NaN = nothing observed yet
    mean: Tensor  # (B, L, D) filtered state mean at t_last
    cov: Tensor  # (B, L, D, D) filtered state covariance at t_last
    ref_mean: Tensor  # (B, R, L) posterior mean of the latent at the reference dates
    ref_var: Tensor  # (B, R, L)
    gain: Tensor  # (B, R, L, D) gains u_r of the reference dates before t_last
    past: Tensor  # (B, R) bool: reference date before t_last (revised through its gain)

    def select(self, idx: Tensor | slice) -> StreamState:
        """The state of pixels ``idx``."""
        return StreamState(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))


def empty_state(prior: MarkovGPPrior, batch_size: int, num_refs: int,
                dtype: torch.dtype = torch.float64, device: torch.device | None = None
                ) -> StreamState:
    """Nothing observed: the stationary prior (mean 0, covariance P_inf) everywhere."""
    ss = prior.state_space()
    pinf = ss.Pinf.to(dtype=dtype, device=device)
    n_lat, d = pinf.shape[0], pinf.shape[-1]
    var = (ss.H.to(pinf) * _mv(pinf, ss.H.to(pinf))).sum(-1)  # (L,)
    return StreamState(
        t_last=torch.full((batch_size,), float("nan"), dtype=dtype, device=device),
        mean=pinf.new_zeros(batch_size, n_lat, d),
        cov=pinf.expand(batch_size, n_lat, d, d).clone(),
        ref_mean=pinf.new_zeros(batch_size, num_refs, n_lat),
        ref_var=var.expand(batch_size, num_refs, n_lat).clone(),
        gain=pinf.new_zeros(batch_size, num_refs, n_lat, d),
        past=torch.zeros(batch_size, num_refs, dtype=torch.bool, device=device))


def stream_update(prior: MarkovGPPrior, state: StreamState, t_ref: Tensor, t: Tensor,
                  mask: Tensor, site_mean: Tensor, site_var: Tensor
                  ) -> tuple[StreamState, int]:
    """The state after new sites (see the module docstring) and the number of sites left out
    (dated before their pixel's last date).

    t_ref (B, R) reference dates; t, mask (B, N) the new dates and where they have a site;
    site_mean, site_var (B, N, L). Computed in float64.
    """
    dt64 = torch.float64
    prior = copy.deepcopy(prior).to(dt64)  # the state space in float64
    ss = prior.state_space()
    H = ss.H  # (L, D)
    t, t_ref = t.to(dt64), t_ref.to(dt64)
    mu, s2 = prior._sites(mask, site_mean.to(dt64), site_var.to(dt64))
    late = mask & (t < state.t_last[:, None])
    mask = mask & ~late
    b, r = t_ref.shape
    # the segment: new sites and the reference dates not yet in the past, sorted (sites
    # first on ties, as the full smoother orders them); inactive points go last, no-ops
    active = torch.cat([mask, ~state.past], 1)
    when = torch.cat([t, t_ref], 1)
    key = torch.where(active, when, torch.full_like(when, float("inf")))
    order = torch.sort(key, dim=1, stable=True).indices
    tp = torch.gather(when, 1, order)
    act = torch.gather(active, 1, order)
    tp = torch.where(act, tp, torch.full_like(tp, -float("inf"))).cummax(1).values
    first = torch.where(act[:, :1], tp[:, :1], torch.zeros_like(tp[:, :1]))
    tp = torch.where(torch.isinf(tp), first, tp)  # leading inactive points: at the start
    is_obs = torch.gather(torch.cat([mask, torch.zeros_like(state.past)], 1), 1, order)
    ref_of = torch.gather(torch.cat([torch.full_like(t, -1, dtype=torch.long),
                                     torch.arange(r, device=t.device).expand(b, r)], 1),
                          1, order)
    ref_of = torch.where(act, ref_of, torch.full_like(ref_of, -1))
    y = torch.gather(torch.cat([mu, mu.new_zeros(b, r, mu.shape[-1])], 1), 1,
                     order[..., None].expand(-1, -1, mu.shape[-1])).transpose(1, 2)
    rv = torch.gather(torch.cat([s2, s2.new_ones(b, r, s2.shape[-1])], 1), 1,
                      order[..., None].expand(-1, -1, s2.shape[-1])).transpose(1, 2)
    t0 = torch.where(torch.isnan(state.t_last), tp[:, 0], state.t_last)
    dt = torch.diff(tp, dim=1, prepend=t0[:, None]).clamp_min(0.0)[:, None]  # (B, 1, P)
    A = ss.transition(dt)  # (B, L, P, D, D)
    Q = ss.process_noise(A)

    # forward: predictions and filtered states at every point
    m, P = state.mean.to(dt64), state.cov.to(dt64)
    mp, Pp, mf, Pf = [], [], [], []
    steps = zip(A.unbind(2), Q.unbind(2), y.unbind(2), rv.unbind(2), is_obs.unbind(1),
                strict=True)  # per-point views (slicing the stacked tensors is slow)
    for A_n, Q_n, y_n, r_n, obs_n in steps:
        m = _mv(A_n, m)
        P = _sym(A_n @ P @ A_n.mT + Q_n)
        mp.append(m)
        Pp.append(P)
        Ph = _mv(P, H)
        w = torch.where(obs_n[:, None], 1.0 / ((H * Ph).sum(-1) + r_n), 0.0)
        m = m + Ph * (w * (y_n - (H * m).sum(-1)))[..., None]
        P = _sym(P - w[..., None, None] * Ph[..., None] * Ph[..., None, :])
        mf.append(m)
        Pf.append(P)

    # backward over the segment; M: product of the E's from a point to the last new site
    idx = torch.arange(tp.shape[1], device=t.device)
    last = torch.where(is_obs, idx, torch.full_like(idx, -1)).max(1).values  # (B,)
    eye = torch.eye(H.shape[-1], dtype=dt64, device=t.device).expand_as(state.cov)
    ms, Ps, M = mf[-1], Pf[-1], eye
    at_mean, at_var, at_gain = [ms], [Ps], [M]  # smoothed state and M, last point first
    if len(mf) > 1:  # every RTS gain E_n = Pf_n A_{n+1}^T (Pp_{n+1})^-1 in one solve
        gains = torch.linalg.solve(torch.stack(Pp[1:], 2),
                                   A[:, :, 1:] @ torch.stack(Pf[:-1], 2)).mT.unbind(2)
    for n in range(len(mf) - 2, -1, -1):
        E = gains[n]
        ms = mf[n] + _mv(E, ms - mp[n + 1])
        Ps = _sym(Pf[n] + E @ (Ps - Pp[n + 1]) @ E.mT)
        M = torch.where((n < last)[:, None, None, None], E @ M, eye)
        at_mean.append(ms)
        at_var.append(Ps)
        at_gain.append(M)
    # the reference dates of the segment: their smoothed latent, and gains before the last site
    pts_mean = (H * torch.stack(at_mean[::-1], 1)).sum(-1)  # (B, P, L)
    pts_var = (H * _mv(torch.stack(at_var[::-1], 1), H)).sum(-1)
    pts_gain = _mv(torch.stack(at_gain[::-1], 1).mT, H)  # (B, P, L, D)
    before = idx[None, :] < last[:, None]  # (B, P)
    rows = torch.arange(b, device=t.device)
    pb, pp = torch.nonzero(ref_of >= 0, as_tuple=True)
    kk = ref_of[pb, pp]
    new_mean, new_var = state.ref_mean.to(dt64).clone(), state.ref_var.to(dt64).clone()
    new_gain, new_past = state.gain.to(dt64).clone(), state.past.clone()
    new_mean[pb, kk] = pts_mean[pb, pp]
    new_var[pb, kk] = pts_var[pb, pp]
    new_past[pb, kk] = before[pb, pp]
    new_gain[pb, kk] = torch.where(before[pb, pp][:, None, None], pts_gain[pb, pp], 0.0)
    # the state at the old last date: its change revises the past reference dates
    P0 = state.cov.to(dt64)
    E0 = torch.linalg.solve(Pp[0], A[:, :, 0].contiguous() @ P0).mT
    dm = _mv(E0, ms - mp[0])
    dP = E0 @ (Ps - Pp[0]) @ E0.mT
    M0 = torch.where((last >= 0)[:, None, None, None], E0 @ M, eye)
    old = state.past  # (B, R)
    u = state.gain.to(dt64)
    shift_mean = (u * dm[:, None]).sum(-1)
    shift_var = (u * _mv(dP[:, None], u)).sum(-1)
    new_mean = torch.where(old[..., None], state.ref_mean.to(dt64) + shift_mean, new_mean)
    new_var = torch.where(old[..., None], state.ref_var.to(dt64) + shift_var, new_var)
    new_gain = torch.where(old[..., None, None], _mv(M0[:, None].mT, u), new_gain)

    has = last >= 0
    pick = last.clamp_min(0)
    mf_all, Pf_all = torch.stack(mf, 2), torch.stack(Pf, 2)
    out = StreamState(
        t_last=torch.where(has, tp[rows, pick], state.t_last.to(dt64)),
        mean=torch.where(has[:, None, None], mf_all[rows, :, pick], state.mean.to(dt64)),
        cov=torch.where(has[:, None, None, None], Pf_all[rows, :, pick], P0),
        ref_mean=new_mean, ref_var=new_var, gain=new_gain, past=new_past | old)
    return out, int(late.sum())


def products(prior: MarkovGPPrior, state: StreamState) -> tuple[Tensor, Tensor]:
    """Posterior mean and variance (B, R, L) of the latent at the reference dates (the
    variance floored at the prior's jitter, as the smoother's)."""
    floor = prior.jitter_var().detach().to(state.ref_var)
    return state.ref_mean, torch.maximum(state.ref_var, floor)

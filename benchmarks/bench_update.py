"""Cost of a streaming update of new dates against recomputing the smoother over all dates.

The markov prior's state of B pixels (L latents, Matern-3/2: state dimension 2) after T past
dates (one every 5 days: the S2 revisit) with reference dates every 10 days over the whole
span (or, --ref-span, the last days only: a year's products); then N new dates arrive
(default 6: a month of S2) and the reference dates are extended over them. Timed (median of
--repeats, torch threads as set by OMP_NUM_THREADS):

- update: :func:`gpvae.models.priors.streaming.stream_update` from the saved state (forward
  filter over the new dates, backward pass over them only, past reference dates revised
  through their gains: O(N + R) per pixel, R = reference dates);
- recompute: :meth:`MarkovGPPrior.predict` over all T + N dates (the Kalman filter + RTS
  smoother), in float64 like the update, and in float32 (the pipeline's precision).

Both give the same posterior at every reference date (checked here, max abs difference
printed; tests/test_streaming.py asserts it). The encoder's cost (one pass per date) is left
out of both: it also scales with N for an update and with T + N for a recomputation.

    OMP_NUM_THREADS=1 python benchmarks/bench_update.py
    OMP_NUM_THREADS=1 python benchmarks/bench_update.py --ref-span 365   # a year's products
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gpvae.models.kernels import make_kernel
from gpvae.models.priors.markov import MarkovGPPrior
from gpvae.models.priors.streaming import empty_state, products, stream_update

CADENCE = 5.0  # days between dates
REF_STEP = 10.0  # days between reference dates


def problem(num_past: int, num_new: int, batch: int, latent: int, ref_span: float | None,
            seed: int = 0):
    """Dates, sites and reference dates of ``batch`` pixels (float64); reference dates over
    the last ``ref_span`` days (None: the whole span)."""
    g = torch.Generator().manual_seed(seed)
    n = num_past + num_new
    t = (torch.arange(n, dtype=torch.float64) * CADENCE).expand(batch, n).clone()
    t += torch.rand(batch, n, generator=g, dtype=torch.float64) * 2.0  # irregular
    mask = torch.rand(batch, n, generator=g) > 0.4  # clouds
    site_mean = torch.randn(batch, n, latent, generator=g, dtype=torch.float64)
    site_var = torch.rand(batch, n, latent, generator=g, dtype=torch.float64) * 0.5 + 0.05
    last = float(t.max())
    first = 0.0 if ref_span is None else max(0.0, last - ref_span)
    ref = torch.arange(first, last + REF_STEP, REF_STEP, dtype=torch.float64)
    return t, mask, site_mean, site_var, ref.expand(batch, ref.numel()).clone()


def timed(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def run(num_past: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    kernel = make_kernel("matern32", args.latent, lengthscale=30.0, outputscale=1.0)
    prior = MarkovGPPrior(kernel).double()
    t, mask, sm, sv, ref = problem(num_past, args.new, args.batch, args.latent,
                                  args.ref_span)
    old = torch.zeros_like(mask)
    old[:, :num_past] = True
    with torch.no_grad():
        state, _ = stream_update(prior, empty_state(prior, args.batch, ref.shape[1]), ref,
                                 t, mask & old, sm, sv)
        sec_update, (updated, _) = timed(
            lambda: stream_update(prior, state, ref, t[:, num_past:], mask[:, num_past:],
                                  sm[:, num_past:], sv[:, num_past:]), args.repeats)
        sec_full, (full_mean, full_var) = timed(lambda: prior.predict(t, mask, sm, sv, ref),
                                                args.repeats)
        p32 = MarkovGPPrior(make_kernel("matern32", args.latent, lengthscale=30.0,
                                        outputscale=1.0)).float()
        sec_full32, _ = timed(lambda: p32.predict(t.float(), mask, sm.float(), sv.float(),
                                                  ref.float()), args.repeats)
    mean, var = products(prior, updated)
    diff = max(float((mean - full_mean).abs().max()), float((var - full_var).abs().max()))
    return {"T past": num_past, "new": args.new, "R refs": ref.shape[1],
            "update (s)": f"{sec_update:.4f}", "recompute f64 (s)": f"{sec_full:.4f}",
            "recompute f32 (s)": f"{sec_full32:.4f}",
            "recompute f64 ÷ update": f"{sec_full / sec_update:.1f}x",
            "max abs diff": f"{diff:.1e}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--T", nargs="+", type=int, default=[73, 146, 365, 730],
                   help="past dates (73 = one year of S2 at 5 days)")
    p.add_argument("--new", type=int, default=6, help="new dates per update")
    p.add_argument("--batch", type=int, default=256, help="pixels")
    p.add_argument("--latent", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ref-span", type=float, default=None,
                   help="reference dates over the last N days only (default: the whole span)")
    args = p.parse_args()
    rows = [run(n, args) for n in args.T]
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(f"\n{args.batch} pixels, {args.latent} latents (Matern-3/2), torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s), median of "
          f"{args.repeats}; reference dates every {REF_STEP:g} days over "
          f"{'the whole span' if args.ref_span is None else f'the last {args.ref_span:g} days'}")


if __name__ == "__main__":
    main()

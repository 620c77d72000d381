"""ELBO cost per GP approximation versus the number of dates T (forward + backward).

For each prior and T, a batch of B pixels with L latent dims gets random sites at T sorted
irregular dates; we time posterior (marginals + KL) and a backward pass, and measure the peak
resident memory added by that step (Linux: VmHWM after resetting it via /proc/self/clear_refs;
on CUDA: torch.cuda.max_memory_allocated). Each configuration runs in a fresh subprocess.

    python benchmarks/bench_priors.py                      # default grid, CPU
    python benchmarks/bench_priors.py --T 25 100 1000 --device cuda
    python benchmarks/bench_priors.py --priors markov --scans --batch 256 --latent 8   # scans
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import time


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _run_one(prior_name: str, T: int, B: int, L: int, device: str, repeats: int,
             queue: mp.Queue) -> None:
    import torch

    from gpvae.models.kernels import make_kernel
    from gpvae.models.priors import make_prior

    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    dev = torch.device(device)
    kernel = make_kernel("matern32", L, lengthscale=30.0)
    kw = {"num_inducing": 32, "time_range": (0.0, 365.0)} if prior_name == "sparse" else {}
    base, _, scan = prior_name.partition(":")  # markov:sequential / markov:parallel
    if scan:
        kw["scan"] = scan
    prior = make_prior(base, kernel, **kw).to(dev)
    gaps = torch.rand(B, T, device=dev) * (730.0 / T) * 2
    t = torch.cumsum(gaps, dim=1)
    t = t / t[:, -1:] * 365.0
    mask = torch.rand(B, T, device=dev) > 0.1
    mean = torch.randn(B, T, L, device=dev, requires_grad=True)
    raw_var = torch.randn(B, T, L, device=dev, requires_grad=True)

    def step() -> None:
        post = prior.posterior(t, mask, mean, torch.nn.functional.softplus(raw_var) + 1e-3)
        loss = post.kl.sum() + (post.mean.square() + post.var).sum()
        loss.backward()

    step()  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    base = _rss_kib("VmRSS:")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = max(0, _rss_kib("VmHWM:") - base) / 1024
    queue.put({"prior": prior_name, "T": T, "seconds": min(times), "peak_mib": peak_mib})


def measure(prior_name: str, T: int, B: int, L: int, device: str, repeats: int,
            timeout: float) -> dict:
    """Run one configuration in a fresh process; returns its timing and memory."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_run_one, args=(prior_name, T, B, L, device, repeats, q))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.terminate()
        return {"prior": prior_name, "T": T, "seconds": float("nan"), "peak_mib": float("nan"),
                "note": f"> {timeout:.0f} s"}
    return q.get() if not q.empty() else {"prior": prior_name, "T": T,
                                          "seconds": float("nan"), "peak_mib": float("nan"),
                                          "note": f"exit {p.exitcode}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--priors", nargs="+", default=["exact", "sparse", "markov"])
    ap.add_argument("--T", nargs="+", type=int, default=[25, 50, 100, 250, 500, 1000, 2000])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--latent", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--scans", action="store_true",
                    help="also time markov:sequential and markov:parallel (markov = auto)")
    a = ap.parse_args()
    if a.scans:
        a.priors = [*a.priors, "markov:sequential", "markov:parallel"]
    rows = []
    for T in a.T:
        for name in a.priors:
            r = measure(name, T, a.batch, a.latent, a.device, a.repeats, a.timeout)
            rows.append(r)
            print(f"  {name:7s} T={T:5d}  {r['seconds']*1e3:10.1f} ms  {r['peak_mib']:8.1f} MiB",
                  flush=True)
    print(f"\nELBO forward+backward, batch {a.batch} pixels x {a.latent} latents, matern32, "
          f"device {a.device} ({platform.processor() or platform.machine()})\n")
    header = "| T | " + " | ".join(f"{p} ms | {p} MiB" for p in a.priors)
    print(header + (" | markov speed-up vs exact |" if {"exact", "markov"} <= set(a.priors)
                    else " |"))
    print("|" + "---|" * (1 + 2 * len(a.priors) + ({"exact", "markov"} <= set(a.priors))))
    for T in a.T:
        by = {r["prior"]: r for r in rows if r["T"] == T}
        cells = []
        for p in a.priors:
            r = by[p]
            cells += [f"{r['seconds']*1e3:.1f}" if r["seconds"] == r["seconds"]
                      else r.get("note", "n/a"), f"{r['peak_mib']:.1f}"]
        line = f"| {T} | " + " | ".join(cells)
        if {"exact", "markov"} <= set(a.priors):
            ratio = by["exact"]["seconds"] / by["markov"]["seconds"]
            line += f" | {ratio:.1f}x" if ratio == ratio else " | n/a"
        print(line + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

"""Parallel prefix scan with an associative operator (Blelloch 1990; as jax.lax.associative_scan).

O(log N) sequential depth: the parallel Kalman filter / RTS smoother of Särkkä &
García-Fernández (2021) use it over the time dimension.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Elements = tuple[Tensor, ...]


def _interleave(even: Tensor, odd: Tensor) -> Tensor:
    """[e0, o0, e1, o1, ...] along dim 0 (len(even) - len(odd) in {0, 1})."""
    n = even.shape[0] + odd.shape[0]
    out = even.new_empty((n, *even.shape[1:]))
    out[0::2] = even
    out[1::2] = odd
    return out


def associative_scan(op: Callable[[Elements, Elements], Elements], elems: Sequence[Tensor],
                     reverse: bool = False) -> Elements:
    """Inclusive scan along dim 0: out_k = e_0 ∘ e_1 ∘ ... ∘ e_k with op(earlier, later).

    With ``reverse``: out_k = e_k ∘ e_{k+1} ∘ ... ∘ e_{N-1} (op(earlier, later) still).
    """
    elems = tuple(elems)
    if reverse:
        flipped = tuple(e.flip(0) for e in elems)
        out = associative_scan(lambda a, b: op(b, a), flipped)
        return tuple(o.flip(0) for o in out)
    n = elems[0].shape[0]
    if n < 2:
        return elems
    reduced = op(tuple(e[0:-1:2] for e in elems), tuple(e[1::2] for e in elems))
    odd = associative_scan(op, reduced)
    if n % 2 == 0:
        even = op(tuple(o[:-1] for o in odd), tuple(e[2::2] for e in elems))
    else:
        even = op(odd, tuple(e[2::2] for e in elems))
    even = tuple(torch.cat([e[:1], r], dim=0) for e, r in zip(elems, even, strict=True))
    return tuple(_interleave(e, o) for e, o in zip(even, odd, strict=True))

"""Irreps bookkeeping in e3nn-torch's conventions.

Features inside jaxtl are *blocks*: a tuple with one array `[n, mul, 2l+1]` per
entry of an irreps list (the mul_ir layout of e3nn, split per entry). An irreps
list is a tuple of `(mul, l, p)` with parity p = +1 (even) or -1 (odd).
"""

from __future__ import annotations

from collections.abc import Sequence

import e3nn_jax as e3nn
import jax.numpy as jnp

IrrepsSpec = tuple[tuple[int, int, int], ...]


def parse_irreps(irreps: str | Sequence) -> IrrepsSpec:
    """'128x0e+128x1o' -> ((128, 0, 1), (128, 1, -1)).

    Examples:
        >>> parse_irreps("128x0e+128x1o")
        ((128, 0, 1), (128, 1, -1))
        >>> parse_irreps([(16, 2, 1)])
        ((16, 2, 1),)
    """
    if isinstance(irreps, str):
        return tuple((m.mul, m.ir.l, m.ir.p) for m in e3nn.Irreps(irreps))
    return tuple((int(m), int(l), int(p)) for m, l, p in irreps)


def irreps_str(irreps: IrrepsSpec) -> str:
    """The e3nn string of an irreps list, the inverse of `parse_irreps`.

    >>> irreps_str(((128, 0, 1), (128, 1, -1)))
    '128x0e+128x1o'
    """
    return "+".join(f"{m}x{l}{'e' if p == 1 else 'o'}" for m, l, p in irreps)


def ir_str(l: int, p: int) -> str:
    return f"{l}{'e' if p == 1 else 'o'}"


def torch_sort_key(entry: tuple[int, int, int]) -> tuple[int, int]:
    """e3nn-torch sorts irreps as the tuple (l, p), odd parity first."""
    _, l, p = entry
    return (l, p)


def sort_simplify(irreps: IrrepsSpec) -> IrrepsSpec:
    """e3nn-torch `irreps.sort().irreps.simplify()`: sorted by (l, p), equal irreps merged, empty ones dropped.

    Examples:
        >>> sort_simplify(parse_irreps("8x1o+16x0e+8x0e+0x2e"))
        ((24, 0, 1), (8, 1, -1))
    """
    out: list[list[int]] = []
    for mul, l, p in sorted(irreps, key=torch_sort_key):
        if out and out[-1][1] == l and out[-1][2] == p:
            out[-1][0] += mul
        else:
            out.append([mul, l, p])
    return tuple((m, l, p) for m, l, p in out if m > 0)


def spherical_harmonics_irreps(max_ell: int) -> IrrepsSpec:
    """The irreps of the spherical harmonics up to `max_ell` (one copy each, natural parity).

    >>> irreps_str(spherical_harmonics_irreps(3))
    '1x0e+1x1o+1x2e+1x3o'
    """
    return tuple((1, l, (-1) ** l) for l in range(max_ell + 1))


def require_natural_parity(irreps: IrrepsSpec, what: str) -> None:
    for _, l, p in irreps:
        if p != (-1) ** l:
            raise NotImplementedError(
                f"{what} contains {ir_str(l, p)}: only natural-parity irreps (0e, 1o, 2e, 3o, ...) "
                "are supported (as in every released MACE model)"
            )


def scalar_channels(irreps: IrrepsSpec) -> int:
    return sum(m for m, l, p in irreps if l == 0 and p == 1)


def blocks_to_flat(blocks: Sequence[jnp.ndarray]) -> jnp.ndarray:
    """Blocks [n, mul, 2l+1] -> mul_ir array [n, sum mul (2l+1)]."""
    n = blocks[0].shape[0]
    return jnp.concatenate([b.reshape(n, -1) for b in blocks], axis=-1)


def flat_to_blocks(x: jnp.ndarray, irreps: IrrepsSpec) -> tuple[jnp.ndarray, ...]:
    """mul_ir array [n, sum mul (2l+1)] -> blocks [n, mul, 2l+1], the inverse of `blocks_to_flat`.

    Examples:
        >>> blocks = flat_to_blocks(jnp.zeros((5, 2 + 3 * 3)), parse_irreps("2x0e+3x1o"))
        >>> [b.shape for b in blocks]
        [(5, 2, 1), (5, 3, 3)]
        >>> blocks_to_flat(blocks).shape
        (5, 11)
    """
    out, start = [], 0
    for mul, l, _ in irreps:
        d = mul * (2 * l + 1)
        out.append(x[:, start : start + d].reshape(x.shape[0], mul, 2 * l + 1))
        start += d
    return tuple(out)


def blocks_to_channel_major(blocks: Sequence[jnp.ndarray]) -> jnp.ndarray:
    """mace's `reshape_irreps`: blocks of equal mul -> [n, mul, sum (2l+1)]."""
    return jnp.concatenate(list(blocks), axis=-1)

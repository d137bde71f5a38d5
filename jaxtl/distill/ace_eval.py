"""Energy, forces and virial of a linear ACE on neighbour rows (`ace_rows`), jit-able.

The model is ace-jax's evaluation form of a fitted ACE (`ace_jax.eval.model.lean`: the
readout folded through the coupling, the pair readout folded into the pair radial, the A
basis in blocks of one l each), and what is computed is what ace-jax computes for it:

    r_ij = x_j - x_i + shift, R_nl(r) = W[zi, zj] . P(x(r)) env(x) (or a spline in x),
    A_i[l-block] = sum_j R(r_ij)[block] (x) Y_l(r_ij),
    e_i = sum_v ctilde[v, z_i] prod_k A_i[spec_v,k] + sum_j R_pair(r_ij) + E0[z_i].

Only the layout differs: a centre's neighbours are a row of fixed width, so pooling is a
sum over an axis, and the work is written as elementwise products and sums over small
axes, which XLA's CPU backend fuses, rather than many tiny matrix products. The energy is
differentiated with respect to the neighbour vectors r_ij; forces and virial follow from
that gradient g_ij: F_i = sum_j g_ij - sum_(j: i is j's neighbour) g_ji, and the virial
-sum_ij sym(r_ij (x) g_ij) (= -dE/dstrain for r_ij -> r_ij + r_ij @ sym(strain)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.distill.ace_rows import RowLayout, unpack_rows
from jaxtl.model.tensor_product import slot_sum

SUPPORTED_RADIALS = ("analytic", "spline")


def check_supported(model) -> None:
    """NotImplementedError naming what this path does not evaluate (the caller falls back
    to ace-jax's own calculator)."""
    from ace_jax.eval.model import ACEModel

    problems = []
    if not isinstance(model, ACEModel):
        problems.append(f"model class {type(model).__name__}")
    else:
        if not model.folded:
            problems.append("an unfolded readout")
        if not model.blk or model.blk_compact:
            problems.append("no l-blocked (non-compact) A basis")
        if model.radial_kind not in SUPPORTED_RADIALS or model.pair_radial_kind not in SUPPORTED_RADIALS:
            problems.append(f"radial kinds {model.radial_kind}/{model.pair_radial_kind}")
        if model.rnl_basis != "poly":
            problems.append(f"rnl_basis {model.rnl_basis}")
        if any(c is not None and c.ndim != 4 for c in (model.rnl_coefs, model.pair_coefs, model.rtab_coefs)):
            problems.append("local-form spline tables")
    if problems:
        raise NotImplementedError("compiled ACE path does not cover " + ", ".join(problems))


def _pair_constants(table, pair) -> list:
    """The columns of a per-pair table [NZ, NZ, P] at every slot (pair [n_rows, width]):
    a Python float where all pairs agree (so an integral exponent stays a
    multiplication), else [n_rows, width]."""
    table = np.asarray(table)
    flat = table.reshape(-1, table.shape[-1])
    columns = []
    for c in range(flat.shape[1]):
        if np.all(flat[:, c] == flat[0, c]):
            columns.append(float(flat[0, c]))
        else:
            columns.append(jnp.asarray(flat[:, c])[pair])
    return columns


def _transform(r, params):
    """ace-jax's `agnesi_normalized`; params (p, q, a, rin, r0, yin, ycut)."""
    p, q, a, rin, r0, yin, ycut = params
    s = (r - rin) / (r0 - rin)
    s_safe = jnp.where(s > 0, s, 1.0)
    y = jnp.where(r > rin, 1.0 / (1.0 + a * _power(s_safe, q) / (1.0 + _power(s_safe, q - p))), 1.0)
    return jnp.clip(-1.0 + 2.0 * (y - yin) / (ycut - yin), -1.0, 1.0)


def _envelope_x(x, params):
    """ace-jax's `env_poly2sx`: s (x - x1)^p1 (x2 - x)^p2 on (x1, x2)."""
    x1, x2, p1, p2, s = params
    inside = (x > x1) & (x < x2)
    a = jnp.where(inside, x - x1, 1.0)
    b = jnp.where(inside, x2 - x, 1.0)
    return jnp.where(inside, s * _power(a, p1) * _power(b, p2), 0.0)


def _envelope_r(kind: str, r, params):
    """ace-jax's pair envelopes `env_poly1sr` and `env_ace1_poly1sr`, zero beyond rcut."""
    if kind == "ace1_poly1sr":
        rcut, r0, p = params[:3]
        inside = r <= rcut
        s = jnp.where(inside & (r > 0), r / r0, 1.0)
        sc = rcut / r0
        val = _power(s, -p) - sc ** (-p) + p * sc ** (-p - 1.0) * (s - sc)
    else:
        rcut, p = params[:2]
        inside = r < rcut
        s = jnp.where(inside & (r > 0), r / rcut, 1.0)
        val = (_power(s, -p) - 1.0) * (1.0 - s)
    return jnp.where(inside, val, 0.0)


def _power(x, e):
    """x ** e; an integral exponent (the transforms' and envelopes' usual 1, 2, 4) as
    multiplications, which cost and differentiate far cheaper than exp(e log x)."""
    if isinstance(e, float) and e.is_integer() and abs(e) <= 8:
        return x ** int(e)
    return x**e


def _spline(x, coefs, pair, grid):
    """[n_rows, width, F] uniform cubic B-splines (ace-jax's `spline_eval` convention: one
    pad coefficient at each end), each slot reading its pair's table of coefs
    [NZ, NZ, n + 2, F]: four rows gathered per slot, weighted elementwise."""
    x0, h, n = grid
    nz2, n_coef = coefs.shape[0] * coefs.shape[1], coefs.shape[2]
    table = jnp.reshape(coefs, (nz2 * n_coef, coefs.shape[3]))
    u = (x - x0) / h + 1.0
    i = jnp.clip(jnp.floor(u).astype(jnp.int32), 1, n - 1)
    t = u - i
    s = 1.0 - t
    weights = (s**3 / 6.0, (4.0 - 6.0 * t**2 + 3.0 * t**3) / 6.0, (4.0 - 6.0 * s**2 + 3.0 * s**3) / 6.0, t**3 / 6.0)
    # the row numbers computed once, apart: fused into the gather, XLA's CPU backend would
    # redo their arithmetic (distance, floor, clip) for every one of the F gathered columns
    first = jax.lax.optimization_barrier(pair * n_coef + i - 1)
    rows = table[first[..., None] + jnp.arange(4)]  # [n_rows, width, 4, F]
    return sum(w[..., None] * rows[..., k, :] for k, w in enumerate(weights))


def _radial(kind, x, pair, coefs, grid, Wnlq, polys, env):
    """[n_rows, width, n] one radial basis (ace-jax's `ACEModel._radial_one`) at every slot,
    with its pair's weights: the polynomial values once, one product per pair (a few),
    each kept on its pair's slots."""
    from ace_jax.eval.radial import poly_recursion

    if kind == "spline":
        return _spline(x, coefs, pair, grid) * env[..., None]
    P = poly_recursion(x, *polys)
    Wnlq = np.asarray(Wnlq)
    nz = Wnlq.shape[0]
    out = 0.0
    for zi in range(nz):
        for zj in range(nz):
            R = jnp.matmul(P, Wnlq[zi, zj].T, precision=jax.lax.Precision.HIGHEST)
            out = out + jnp.where((pair == zi * nz + zj)[..., None], R, 0.0)
    return out * env[..., None]


def _slot_radials(model, r, pair):
    """[n_rows, width, n_rnl + n_pair]: R_nl and R_pair at the slots' distances r A."""
    if model.rtab_grid:
        # ace-jax's radial table (`with_radial_table`): one cubic B-spline in r per pair,
        # exactly zero from the pair's cutoff on
        cutoff = _pair_constants(np.asarray(model.pair_envelope)[..., :1], pair)[0]
        return jnp.where((r < cutoff)[..., None], _spline(r, model.rtab_coefs, pair, model.rtab_grid), 0.0)
    x = _transform(r, _pair_constants(model.rnl_transform, pair))
    R = _radial(
        model.radial_kind,
        x,
        pair,
        model.rnl_coefs,
        model.rnl_grid,
        model.rnl_Wnlq,
        (model.polys_A, model.polys_B, model.polys_C),
        _envelope_x(x, _pair_constants(model.rnl_envelope, pair)),
    )
    envp = _envelope_r(model.pair_envelope_kind, r, _pair_constants(model.pair_envelope, pair))
    Rpair = _radial(
        model.pair_radial_kind,
        _transform(r, _pair_constants(model.pair_transform, pair)),
        pair,
        model.pair_coefs,
        model.pair_grid,
        model.pair_Wnlq,
        (model.pair_polys_A, model.pair_polys_B, model.pair_polys_C),
        envp,
    )
    return jnp.concatenate([R, Rpair], axis=-1)


def _radials_with_slope(model, r, pair):
    """`_slot_radials`, differentiated by forward mode.

    The radials are functions of one variable, so dR/dr comes with their value (the
    tangent of the recursion or spline fused into it) and the reverse pass is one
    product with it, instead of the transposed recursion.
    """

    @jax.custom_jvp
    def radials(r):
        return _slot_radials(model, r, pair)

    @radials.defjvp
    def _(primals, tangents):
        (r,), (dr,) = primals, tangents
        value, slope = jax.jvp(lambda t: _slot_radials(model, t, pair), (r,), (jnp.ones_like(r),))
        return value, slope * dr[..., None]

    return radials(r)


def _harmonics(model, rij):
    from ace_jax.eval.harmonics import real_solid_harmonics, real_spherical_harmonics

    return real_solid_harmonics(rij, model.lmax) if model.ysolid else real_spherical_harmonics(rij, model.lmax)


def _pool(R, Y, blk):
    """[n_rows, n_A]: per l-block (l, offset, w), sum_k R[:, k, offset + r] Y[:, k, l^2 + y]
    with (r, y) row-major (ace-jax's A order). One batched matmul of every radial with every
    harmonic, of which the blocks' entries are kept: more products than the blocks need,
    but on the CPU one small matmul per row costs less than one per block, forward and
    reverse."""
    n_rows, n_r = R.shape[0], R.shape[-1]
    # [n, y, r]: harmonics leading, so that the gradient in R is the short sum over the
    # (lmax + 1)^2 harmonics (`slot_sum`'s row sums) and the one in Y a matmul over the radials
    every = slot_sum(Y, R).reshape(n_rows, -1)
    kept = [((o + np.arange(w))[:, None] + (l * l + np.arange(2 * l + 1)) * n_r).reshape(-1) for l, o, w in blk]
    return every[:, np.concatenate(kept)]


def _basis_products(specs, c, A):
    """[n_rows]: sum_v c[v, row] prod_k A[row, spec_v,k], from feature-major rows of A
    (each gather a contiguous row); c [n_basis, n_rows] the coefficients of each row's species."""
    At = A.T
    e, first = 0.0, 0
    for spec in specs:
        prod = At[spec[:, 0]]
        for k in range(1, spec.shape[1]):
            prod = prod * At[spec[:, k]]
        e = e + jnp.sum(c[first : first + len(spec)] * prod, axis=0)
        first += len(spec)
    return e


def _gradient_tables(specs, n_A: int):
    """Index tables for dE/dA_a = sum over the terms t with feature a of c_v(t) times the
    product of t's other factors, with the terms sorted by feature: each term's feature [T],
    coefficient index [T] and other factors [T, order - 1] (n_A: a factor of one)."""
    order = max(spec.shape[1] for spec in specs)
    feature, coef, others, first = [], [], [], 0
    for spec in specs:
        for k in range(spec.shape[1]):
            rest = np.delete(spec, k, axis=1)
            feature.append(spec[:, k])
            coef.append(first + np.arange(len(spec)))
            others.append(np.pad(rest, ((0, 0), (0, order - 1 - rest.shape[1])), constant_values=n_A))
        first += len(spec)
    by_feature = np.argsort(np.concatenate(feature), kind="stable")
    return tuple(np.concatenate(table)[by_feature] for table in (feature, coef, others))


def _species_columns(table, species):
    """[P, n_rows]: the column of table [P, NZ] of each row's species, by selects (NZ is
    a few): on the CPU cheaper than a gather or a matrix product with NZ columns."""
    table = jnp.asarray(table)
    out = jnp.broadcast_to(table[:, :1], (table.shape[0], species.shape[0]))
    for z in range(1, table.shape[1]):
        out = jnp.where(species[None, :] == z, table[:, z : z + 1], out)
    return out


def _product_basis_energies(model, A, species):
    """[n_rows]: sum_v ctilde[v, z_row] prod_k A[row, spec_v,k], each row at its own
    species, with its gradient written out (`_gradient_tables`)."""
    specs = [np.asarray(spec) for spec in model.blk_aa_specs]

    @jax.custom_vjp
    def energies(A, c):
        return _basis_products(specs, c, A)

    def forward(A, c):
        return _basis_products(specs, c, A), (A, c)

    def backward(residuals, e_bar):
        # feature-major, so that every gather takes whole rows and the sum over a
        # feature's terms adds whole rows of the sorted terms
        A, c = residuals
        n_rows, n_A = A.shape
        feature, coef, others = _gradient_tables(specs, n_A)
        A1t = jnp.concatenate([A.T, jnp.ones((1, n_rows), A.dtype)], axis=0)
        terms = c[coef] * e_bar[None, :]  # [T, n_rows]
        for k in range(others.shape[1]):
            terms = terms * A1t[others[:, k]]
        # c is the species' constants: nothing flows back to it
        return jax.ops.segment_sum(terms, feature, n_A, indices_are_sorted=True).T, jnp.zeros_like(c)

    energies.defvjp(forward, backward)
    return energies(A, _species_columns(model.ctilde, species))


def site_energies(model, rij, pair, species, slot_mask):
    """[n_rows] site energies in eV (padding rows included: mask them).

    rij [n_rows, width, 3] A, padding slots parked at the cutoff (every radial is 0
    there); pair [n_rows, width] and species [n_rows], padding set to a valid index;
    slot_mask [n_rows, width] bool.
    """
    V = jnp.where(slot_mask[..., None], _radials_with_slope(model, jnp.linalg.norm(rij, axis=-1), pair), 0.0)
    n_pair = model.Wpair.shape[0]
    n_rnl = V.shape[-1] - n_pair
    # pair readout and E0 of each row's species: [n_pair + 1, n_rows]
    w = _species_columns(jnp.concatenate([jnp.asarray(model.Wpair), jnp.asarray(model.E0)[None]], axis=0), species)
    e = jnp.sum(V[..., n_rnl:].sum(axis=1) * w[:n_pair].T, axis=1) + w[n_pair]
    if model.blk_aa_specs:
        e = e + _product_basis_energies(model, _pool(V[..., :n_rnl], _harmonics(model, rij), model.blk), species)
    return e


def energy_forces_virial(model, layout: RowLayout, vectors, indices):
    """(energy eV, site energies [n_rows] eV, forces [n_rows, 3] eV/A, virial [3, 3] eV)
    of the `NeighbourRows` arrays of `layout`.

    The virial is -dE/dstrain (ace-jax's sign; ASE stress = -virial / volume).
    """
    rij, neighbour, pair, species = unpack_rows(layout, vectors, indices)
    slot_mask, row_mask = pair >= 0, species >= 0
    pair, species = jnp.maximum(pair, 0), jnp.maximum(species, 0)
    park = jnp.asarray([1.0, 0.0, 0.0], rij.dtype) * model.pad_cutoff()
    rij = jnp.where(slot_mask[..., None], rij, park)

    def total(rij):
        e = jnp.where(row_mask, site_energies(model, rij, pair, species, slot_mask), 0.0)
        return jnp.sum(e), e

    (energy, e), g = jax.value_and_grad(total, has_aux=True)(rij)
    g = jnp.where(slot_mask[..., None], g, 0.0)
    forces = g.sum(axis=1) - jax.ops.segment_sum(g.reshape(-1, 3), neighbour.reshape(-1), layout.n_rows)
    w = jnp.matmul(rij.reshape(-1, 3).T, g.reshape(-1, 3), precision=jax.lax.Precision.HIGHEST)
    return energy, e, forces, -0.5 * (w + w.T)

"""Energy, forces and virial of a linear ACE on neighbour blocks (`ace_blocks`), jit-able.

The model is ace-jax's evaluation form of a fitted ACE (`ace_jax.eval.model.lean`: the
readout folded through the coupling, the pair readout folded into the pair radial, the A
basis in blocks of one l each), and what is computed is what ace-jax computes for it:

    r_ij = x_j - x_i + shift, R_nl(r) = W[zi, zj] . P(x(r)) env(x) (or a spline in x),
    A_i[l-block] = sum_j R(r_ij)[block] (x) Y_l(r_ij),
    e_i = sum_v ctilde[v, z_i] prod_k A_i[spec_v,k] + sum_j R_pair(r_ij) + E0[z_i].

Only the layout differs: each (zi, zj) pair is a block, so its weights are constants and
not gathered per edge, and a centre's neighbours are summed over a fixed axis. Forces
are -dE/dpositions, the virial -dE/dstrain (rij -> rij + rij @ sym(strain)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.distill.ace_blocks import BlockLayout

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


def _slot_constants(layout: BlockLayout, table) -> list:
    """The columns of a per-pair table [NZ, NZ, P] for every slot: a Python float where all
    pairs agree (so an integral exponent stays a multiplication), else [n_slots]."""
    table = np.asarray(table)
    columns = []
    for c in range(table.shape[-1]):
        values = {float(table[zi, zj, c]) for zi, zj, _, _ in layout.blocks}
        if len(values) == 1:
            columns.append(values.pop())
        else:
            columns.append(
                jnp.asarray(
                    np.concatenate(
                        [np.full(layout.species_rows[zi][1] * K, table[zi, zj, c]) for zi, zj, K, _ in layout.blocks]
                    )
                )
            )
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


def _radial(kind, layout: BlockLayout, x, coefs, grid, Wnlq, polys, env):
    """[n_slots, n] one radial basis (ace-jax's `ACEModel._radial_one`) on every slot,
    each block with its own pair's table, a constant: a matmul, not a per-edge gather."""
    from ace_jax.eval.radial import poly_recursion, spline_eval

    P = poly_recursion(x, *polys) if kind == "analytic" else None
    parts = []
    for zi, zj, K, s in layout.blocks:
        sl = slice(s, s + layout.species_rows[zi][1] * K)
        if kind == "spline":
            x0, h, n = grid
            parts.append(spline_eval(x[sl], coefs[zi, zj], x0, h, n))
        else:
            parts.append(jnp.matmul(P[sl], Wnlq[zi, zj].T, precision=jax.lax.Precision.HIGHEST))
    return jnp.concatenate(parts) * env[:, None]


def _tabulated_radials(model, layout: BlockLayout, r):
    """[n_slots, n_rnl + n_pair] from ace-jax's radial table (`with_radial_table`): one
    cubic B-spline in r per pair, exactly zero from the pair's cutoff on."""
    from ace_jax.eval.radial import spline_eval

    x0, h, n = model.rtab_grid
    cutoff = np.asarray(model.pair_envelope)[..., 0]
    parts = []
    for zi, zj, K, s in layout.blocks:
        rb = r[s : s + layout.species_rows[zi][1] * K]
        parts.append(
            jnp.where((rb < cutoff[zi, zj])[:, None], spline_eval(rb, model.rtab_coefs[zi, zj], x0, h, n), 0.0)
        )
    return jnp.concatenate(parts)


def _slot_radials(model, layout: BlockLayout, r):
    """[n_slots, n_rnl + n_pair]: R_nl and R_pair at the slots' distances r [n_slots] A."""
    if model.rtab_grid:
        return _tabulated_radials(model, layout, r)
    x = _transform(r, _slot_constants(layout, model.rnl_transform))
    R = _radial(
        model.radial_kind,
        layout,
        x,
        model.rnl_coefs,
        model.rnl_grid,
        model.rnl_Wnlq,
        (model.polys_A, model.polys_B, model.polys_C),
        _envelope_x(x, _slot_constants(layout, model.rnl_envelope)),
    )
    envp = _envelope_r(model.pair_envelope_kind, r, _slot_constants(layout, model.pair_envelope))
    Rpair = _radial(
        model.pair_radial_kind,
        layout,
        _transform(r, _slot_constants(layout, model.pair_transform)),
        model.pair_coefs,
        model.pair_grid,
        model.pair_Wnlq,
        (model.pair_polys_A, model.pair_polys_B, model.pair_polys_C),
        envp,
    )
    return jnp.concatenate([R, Rpair], axis=1)


def _radials_with_slope(model, layout: BlockLayout, r):
    """`_slot_radials`, differentiated by forward mode.

    The radials are functions of one variable, so dR/dr [n_slots, n] comes with their
    value (the tangent of the polynomial recursion fused into it) and the reverse pass is
    one product with it, instead of the transposed recursion and matmuls.
    """

    @jax.custom_jvp
    def radials(r):
        return _slot_radials(model, layout, r)

    @radials.defjvp
    def _(primals, tangents):
        (r,), (dr,) = primals, tangents
        value, slope = jax.jvp(lambda t: _slot_radials(model, layout, t), (r,), (jnp.ones_like(r),))
        return value, slope * dr[:, None]

    return radials(r)


def _harmonics(model, rij):
    from ace_jax.eval.harmonics import real_solid_harmonics, real_spherical_harmonics

    return real_solid_harmonics(rij, model.lmax) if model.ysolid else real_spherical_harmonics(rij, model.lmax)


def _product_basis_energy(model, A, z: int):
    """[N] sum_v ctilde[v, z] prod_k A[:, spec_v,k]: products of feature-major rows of A."""
    At = A.T
    e, first = 0.0, 0
    for spec in model.blk_aa_specs:
        spec = np.asarray(spec)
        prod = At[spec[:, 0]]
        for k in range(1, spec.shape[1]):
            prod = prod * At[spec[:, k]]
        e = e + jnp.matmul(model.ctilde[first : first + spec.shape[0], z], prod, precision=jax.lax.Precision.HIGHEST)
        first += spec.shape[0]
    return e


def _pool(R, Y):
    """[N, w * (2l + 1)] sum_k R[:, k, r] Y[:, k, y], (r, y) row-major (ace-jax's A order).
    A batched matmul: on the CPU faster, forward and reverse, than the broadcast product."""
    return jnp.einsum("nkr,nky->nry", R, Y, precision=jax.lax.Precision.HIGHEST).reshape(R.shape[0], -1)


def site_energies(model, layout: BlockLayout, positions, centre, neighbour, shift, slot_mask, strain):
    """Per-row site energies in eV, [sum N_z] (padding rows included: mask them).

    positions [n_atoms, 3] A; centre, neighbour, slot_mask [n_slots]; shift [n_slots, 3] A;
    strain [3, 3] (zero: the energy itself; differentiate for the virial).
    """
    n_A = sum(w * (2 * l + 1) for l, _, w in model.blk)
    if not layout.blocks:
        return jnp.concatenate(
            [jnp.full(n, model.E0[z], positions.dtype) for z, (_, n) in enumerate(layout.species_rows)]
        )
    park = jnp.asarray([1.0, 0.0, 0.0], positions.dtype) * model.pad_cutoff()
    rij = positions[neighbour] - positions[centre] + shift
    rij = jnp.where(slot_mask[:, None], rij, park)  # padding slots at the cutoff: every radial is 0 there
    rij = rij + rij @ (0.5 * (strain + strain.T))
    V = jnp.where(slot_mask[:, None], _radials_with_slope(model, layout, jnp.linalg.norm(rij, axis=-1)), 0.0)
    n_rnl = V.shape[1] - model.Wpair.shape[0]
    Y = _harmonics(model, rij)
    out = []
    for z, (_, n_rows) in enumerate(layout.species_rows):
        if not n_rows:
            continue
        A = {l: 0.0 for l, _, _ in model.blk}
        pair_energy = 0.0
        for zi, _, K, s in layout.blocks:
            if zi != z:
                continue
            sl = slice(s, s + n_rows * K)
            R, Yb = V[sl, :n_rnl].reshape(n_rows, K, -1), Y[sl].reshape(n_rows, K, -1)
            for l, o, w in model.blk:
                A[l] = A[l] + _pool(R[..., o : o + w], Yb[..., l * l : (l + 1) ** 2])
            pair_energy = pair_energy + jnp.matmul(V[sl, n_rnl:].reshape(n_rows, K, -1).sum(axis=1), model.Wpair[:, z])
        parts = [jnp.broadcast_to(A[l], (n_rows, w * (2 * l + 1))) for l, _, w in model.blk]
        A_z = jnp.concatenate(parts, axis=1) if parts else jnp.zeros((n_rows, n_A), positions.dtype)
        out.append(_product_basis_energy(model, A_z, z) + pair_energy + model.E0[z])
    return jnp.concatenate(out)


def energy_forces_virial(model, layout: BlockLayout, positions, rows, row_mask, centre, neighbour, shift, slot_mask):
    """(energy eV, site energies [sum N_z] eV, forces [n_atoms, 3] eV/A, virial [3, 3] eV).

    The virial is -dE/dstrain (ace-jax's sign; ASE stress = -virial / volume).
    """

    def total(x, strain):
        e = site_energies(model, layout, x, centre, neighbour, shift, slot_mask, strain)
        e = jnp.where(row_mask, e, 0.0)
        return jnp.sum(e), e

    strain = jnp.zeros((3, 3), positions.dtype)
    (energy, e), (g_x, g_strain) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(positions, strain)
    return energy, e, -g_x, -g_strain

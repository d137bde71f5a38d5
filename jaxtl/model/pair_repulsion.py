"""ZBL pair repulsion (mace's `ZBLBasis`), added per node before scale/shift."""

from __future__ import annotations

import ase.data
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.model.radial import polynomial_envelope


class ZBLRepulsion(nn.Module):
    """Universal ZBL screened nuclear repulsion with a covalent-radius envelope.

    Returns node energies [n_nodes] in eV: half of each edge's V_ZBL(r) summed onto
    its receiver (every pair appears as two edges).
    """

    num_polynomial_cutoff: float

    @nn.compact
    def __call__(self, lengths, z_sender, z_receiver, receivers, n_nodes: int):
        """lengths: [n_edges, 1] in A; z_*: [n_edges] atomic numbers."""
        dtype = lengths.dtype

        def const(name, value):
            return jnp.asarray(self.variable("constants", name, lambda: jnp.asarray(np.asarray(value))).value, dtype)

        c = const("c", [0.1818, 0.5099, 0.2802, 0.02817])
        a_exp = const("a_exp", 0.300)
        a_prefactor = const("a_prefactor", 0.4543)
        radii = const("covalent_radii", ase.data.covalent_radii)
        p = const("p", float(self.num_polynomial_cutoff))

        zu = z_sender.astype(dtype)[:, None]
        zv = z_receiver.astype(dtype)[:, None]
        a = a_prefactor * 0.529 / (zu**a_exp + zv**a_exp)
        x = lengths / a
        phi = (
            c[0] * jnp.exp(-3.2 * x)
            + c[1] * jnp.exp(-0.9423 * x)
            + c[2] * jnp.exp(-0.4028 * x)
            + c[3] * jnp.exp(-0.2016 * x)
        )
        v = 14.3996 * zu * zv / lengths * phi
        r_max = radii[z_sender][:, None] + radii[z_receiver][:, None]
        v = 0.5 * v * polynomial_envelope(lengths, r_max, p)
        return jax.ops.segment_sum(v[:, 0], receivers, num_segments=n_nodes)

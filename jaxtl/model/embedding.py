"""Edge embeddings: the radial embedding block and the spherical harmonics."""

from __future__ import annotations

import math

import ase.data
import e3nn_jax as e3nn
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxtl.model import radial


def _const(module: nn.Module, name: str, value) -> jnp.ndarray:
    """A non-trainable array in the `constants` collection (stored buffers of mace-torch)."""
    return jnp.asarray(module.variable("constants", name, lambda: jnp.asarray(np.asarray(value))).value)


class RadialEmbedding(nn.Module):
    """mace's `RadialEmbeddingBlock`: basis of (transformed) lengths times the envelope.

    Returns `(edge_feats [n_edges, num_basis], cutoff [n_edges, 1] or None)`. With
    `apply_cutoff` the envelope multiplies the basis and `cutoff` is None; otherwise
    the envelope is returned for the interaction blocks to apply.
    """

    r_max: float
    num_bessel: int
    num_polynomial_cutoff: float
    radial_type: str = "bessel"
    distance_transform: str = "None"
    apply_cutoff: bool = True

    @nn.compact
    def __call__(self, lengths=None, z_sender=None, z_receiver=None):
        """lengths: [n_edges, 1] in A; z_*: [n_edges] atomic numbers of the edge ends.

        Called without lengths, returns the embedding as a pure function of
        (lengths, z_sender, z_receiver), for loops over edges to apply to their rows.
        """
        p = _const(self, "p", float(self.num_polynomial_cutoff))
        r_max = _const(self, "r_max", float(self.r_max))
        # constants are cast to the lengths' dtype where they are applied
        transform, transform_consts = None, ()
        if self.distance_transform != "None":
            radii = _const(self, "covalent_radii", ase.data.covalent_radii)
            if self.distance_transform == "Agnesi":
                names = (("agnesi_q", 0.9183), ("agnesi_p", 4.5791), ("agnesi_a", 1.0805))
                transform = radial.agnesi_transform
                transform_consts = (radii, *(_const(self, k, v) for k, v in names))
            elif self.distance_transform == "Soft":
                transform, transform_consts = radial.soft_transform, (radii, _const(self, "soft_alpha", 4.0))
            else:
                raise ValueError(f"unknown distance_transform {self.distance_transform!r}")

        if self.radial_type == "bessel":
            w = _const(self, "bessel_weights", np.pi / self.r_max * np.arange(1, self.num_bessel + 1))
            pref = _const(self, "prefactor", math.sqrt(2.0 / self.r_max))

            def basis_fn(r):
                return radial.bessel_basis(r, w.astype(r.dtype), pref.astype(r.dtype))

        elif self.radial_type == "gaussian":
            mu = _const(self, "gaussian_weights", np.linspace(0.0, self.r_max, self.num_bessel))
            coeff = -0.5 / (self.r_max / (self.num_bessel - 1)) ** 2

            def basis_fn(r):
                return radial.gaussian_basis(r, mu.astype(r.dtype), coeff)

        elif self.radial_type == "chebyshev":
            num_basis = self.num_bessel

            def basis_fn(r):
                return radial.chebyshev_basis(r, num_basis)

        else:
            raise ValueError(f"unknown radial_type {self.radial_type!r}")

        apply_cutoff = self.apply_cutoff

        def embed(lengths, z_sender, z_receiver):
            dtype = lengths.dtype
            cutoff = radial.polynomial_envelope(lengths, r_max.astype(dtype), p.astype(dtype))
            r = lengths
            if transform is not None:
                r_cov, *consts = (c.astype(dtype) for c in transform_consts)
                r = transform(r, r_cov[z_sender][:, None], r_cov[z_receiver][:, None], *consts)
            basis = basis_fn(r)
            if apply_cutoff:
                return basis * cutoff, None
            return basis, cutoff

        return embed if lengths is None else embed(lengths, z_sender, z_receiver)


def spherical_harmonics(vectors: jnp.ndarray, max_ell: int) -> tuple[jnp.ndarray, ...]:
    """Real spherical harmonics, component normalisation, of unit vectors.

    vectors: [n_edges, 3]; returns one array [n_edges, 2l+1] per l = 0..max_ell, in
    e3nn's basis (identical in e3nn-torch and e3nn-jax; l=1 is sqrt(3) (x, y, z)/r).
    """
    irreps = "+".join(f"{l}{'e' if l % 2 == 0 else 'o'}" for l in range(max_ell + 1))
    sh = e3nn.spherical_harmonics(irreps, vectors, normalize=True, normalization="component")
    arr = sh.array
    out, start = [], 0
    for l in range(max_ell + 1):
        out.append(arr[:, start : start + 2 * l + 1])
        start += 2 * l + 1
    return tuple(out)

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
    def __call__(self, lengths, z_sender, z_receiver):
        """lengths: [n_edges, 1] in A; z_*: [n_edges] atomic numbers of the edge ends."""
        dtype = lengths.dtype
        p = _const(self, "p", float(self.num_polynomial_cutoff)).astype(dtype)
        r_max = _const(self, "r_max", float(self.r_max)).astype(dtype)
        cutoff = radial.polynomial_envelope(lengths, r_max, p)

        r = lengths
        if self.distance_transform != "None":
            radii = _const(self, "covalent_radii", ase.data.covalent_radii).astype(dtype)
            r_s, r_r = radii[z_sender][:, None], radii[z_receiver][:, None]
            if self.distance_transform == "Agnesi":
                q = _const(self, "agnesi_q", 0.9183).astype(dtype)
                pa = _const(self, "agnesi_p", 4.5791).astype(dtype)
                a = _const(self, "agnesi_a", 1.0805).astype(dtype)
                r = radial.agnesi_transform(r, r_s, r_r, q, pa, a)
            elif self.distance_transform == "Soft":
                alpha = _const(self, "soft_alpha", 4.0).astype(dtype)
                r = radial.soft_transform(r, r_s, r_r, alpha)
            else:
                raise ValueError(f"unknown distance_transform {self.distance_transform!r}")

        if self.radial_type == "bessel":
            w = _const(self, "bessel_weights", np.pi / self.r_max * np.arange(1, self.num_bessel + 1))
            pref = _const(self, "prefactor", math.sqrt(2.0 / self.r_max))
            basis = radial.bessel_basis(r, w.astype(dtype), pref.astype(dtype))
        elif self.radial_type == "gaussian":
            mu = _const(self, "gaussian_weights", np.linspace(0.0, self.r_max, self.num_bessel))
            coeff = -0.5 / (self.r_max / (self.num_bessel - 1)) ** 2
            basis = radial.gaussian_basis(r, mu.astype(dtype), coeff)
        elif self.radial_type == "chebyshev":
            basis = radial.chebyshev_basis(r, self.num_bessel)
        else:
            raise ValueError(f"unknown radial_type {self.radial_type!r}")

        if self.apply_cutoff:
            return basis * cutoff, None
        return basis, cutoff


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

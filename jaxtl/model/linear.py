"""Equivariant linear maps: e3nn's `o3.Linear` and its element-dependent form.

Both keep e3nn-torch's parametrisation (weights ~ N(0, 1), normalised by
1/sqrt(fan_in) in the forward pass) so that training dynamics match mace-torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxtl.graph.graph import ELEMENT_SLOTS
from jaxtl.model.irreps import IrrepsSpec, ir_str


def _output_names(irreps_out: IrrepsSpec) -> list[str]:
    """Readable parameter names: the irrep ('0e', '1o'), indexed only when repeated."""
    keys = [ir_str(l, p) for _, l, p in irreps_out]
    return [k if keys.count(k) == 1 else f"{j}_{k}" for j, k in enumerate(keys)]


def _per_output(irreps_in: IrrepsSpec, irreps_out: IrrepsSpec, blocks: Sequence[jnp.ndarray]):
    """For each output entry: (param name, mul_out, l, inputs of its irrep concatenated along mul or None).

    The concatenation order is the input order, the layout of e3nn's flat weights.
    """
    for name, (mul_out, l, p) in zip(_output_names(irreps_out), irreps_out):
        inputs = [blocks[i] for i, (_, li, pi) in enumerate(irreps_in) if (li, pi) == (l, p)]
        yield name, mul_out, l, (jnp.concatenate(inputs, axis=1) if inputs else None)


class IrrepsLinear(nn.Module):
    """e3nn-torch `o3.Linear(irreps_in -> irreps_out)` without biases.

    Input and output are blocks `[n, mul, 2l+1]`. For each output entry, all input
    entries of the same irrep are concatenated along `mul` (in input order, the
    layout of e3nn's flat weight) and mixed by one matrix `[sum mul_in, mul_out]`.
    Outputs without any input of their irrep are zeros, as in e3nn-torch.
    `weights()` hands the matrices out for `irreps_linear` to be applied inside a
    loop over nodes (see `tensor_product.messages`).
    """

    irreps_in: IrrepsSpec
    irreps_out: IrrepsSpec
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.mats = tuple(
            self.param(name, nn.initializers.normal(1.0), (fan_in, mul_out), self.dtype) if fan_in else None
            for name, mul_out, fan_in in _fans(self.irreps_in, self.irreps_out)
        )

    def __call__(self, blocks: Sequence[jnp.ndarray]) -> tuple[jnp.ndarray, ...]:
        return irreps_linear(self.irreps_in, self.irreps_out, self.mats, blocks)

    def weights(self) -> tuple[jnp.ndarray | None, ...]:
        return self.mats


def _fans(irreps_in: IrrepsSpec, irreps_out: IrrepsSpec) -> list[tuple[str, int, int]]:
    """(param name, mul_out, fan_in) per output entry; fan_in 0 where no input has its irrep."""
    return [
        (name, mul_out, sum(m for m, li, pi in irreps_in if (li, pi) == (l, p)))
        for name, (mul_out, l, p) in zip(_output_names(irreps_out), irreps_out)
    ]


def irreps_linear(irreps_in: IrrepsSpec, irreps_out: IrrepsSpec, mats, blocks: Sequence[jnp.ndarray]):
    """`IrrepsLinear` with its matrices `mats` (one `[fan_in, mul_out]` or None per output)."""
    n = blocks[0].shape[0]
    out = []
    for (_, mul_out, l, x), w in zip(_per_output(irreps_in, irreps_out, blocks), mats):
        if x is None:
            out.append(jnp.zeros((n, mul_out, 2 * l + 1), blocks[0].dtype))
            continue
        fan_in = x.shape[1]
        out.append(jnp.einsum("nui,uw->nwi", x, w.astype(x.dtype)) / math.sqrt(fan_in))
    return tuple(out)


class ElementLinear(nn.Module):
    """e3nn's `FullyConnectedTensorProduct(irreps_in, Zx0e, irreps_out)` on a one-hot.

    With one-hot node attributes this is a linear map whose weights depend on the
    element: `y[w] = sum_u W[z, u, w] x[u] / sqrt(fan_in * num_elements)`. Weights
    are stored `[num_elements, sum mul_in, mul_out]` per output irrep.
    """

    irreps_in: IrrepsSpec
    irreps_out: IrrepsSpec
    num_elements: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, blocks: Sequence[jnp.ndarray] | None, species=None, elements: jnp.ndarray | None = None):
        """species: [n] int, index into the model's element table; elements: [slots]
        the indices present (-1: empty slot) or None (see `Graph.elements`).
        blocks None: returns the map as a pure function (blocks, species) of any rows.

        With `elements` (or few elements in the model), each node's output is picked
        from the outputs of the weights of every element present (one matmul, slots x
        the work of one element) instead of gathering a weight matrix per node
        ([n, fan_in, mul_out], slow and large; its transpose in training a scatter).
        Nodes of an element not listed (padding nodes) get zeros."""
        Z, irreps_in, irreps_out = self.num_elements, self.irreps_in, self.irreps_out
        ws = [
            self.param(name, nn.initializers.normal(1.0), (Z, fan_in, mul_out), self.dtype) if fan_in else None
            for name, mul_out, fan_in in _fans(irreps_in, irreps_out)
        ]
        if Z <= ELEMENT_SLOTS:  # every element is a slot: no list needed
            elements = jnp.arange(Z)

        def apply(blocks, species):
            n, dtype = blocks[0].shape[0], blocks[0].dtype
            onehot = None if elements is None else (species[:, None] == elements[None, :]).astype(dtype)
            out = []
            for (_, mul_out, l, x), w in zip(_per_output(irreps_in, irreps_out, blocks), ws):
                if x is None:
                    out.append(jnp.zeros((n, mul_out, 2 * l + 1), dtype))
                    continue
                norm = 1.0 / math.sqrt(x.shape[1] * Z)
                if onehot is None:
                    out.append(jnp.einsum("nui,nuw->nwi", x, w[species].astype(x.dtype)) * norm)
                else:
                    per_element = jnp.einsum("nui,suw->nswi", x, w[jnp.maximum(elements, 0)].astype(x.dtype))
                    out.append(jnp.einsum("nswi,ns->nwi", per_element, onehot) * norm)
            return tuple(out)

        return apply if blocks is None else apply(blocks, species)


class ElementEmbedding(nn.Module):
    """mace's `LinearNodeEmbeddingBlock`: o3.Linear(Zx0e -> Cx0e) on a one-hot.

    Returns one block `[n, channels, 1]`; weights `embeddings [num_elements, channels]`.
    """

    num_elements: int
    channels: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, species: jnp.ndarray) -> tuple[jnp.ndarray]:
        w = self.param("embeddings", nn.initializers.normal(1.0), (self.num_elements, self.channels), self.dtype)
        return (w[species][:, :, None] / math.sqrt(self.num_elements),)

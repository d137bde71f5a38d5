"""Surface variants of slab starts for sampling: step edges cut into a flat facet.

A student fitted only to flat facets has never seen the under-coordinated atoms of a step
edge (7 metal neighbours on an fcc step against 9 on a (111) terrace), so a stepped surface
it is tested on is out of its training data. Removing whole atom rows of a slab's outermost
layer makes that environment from the training facets themselves: the rows left on either
side of the trench end in step edges, and the atoms of the layer below the trench become the
step's inner corner.
"""

from __future__ import annotations

from collections.abc import Sequence

import ase
import numpy as np

FACES = ("top", "bottom")


def step_edges(
    slab: ase.Atoms,
    rows: int = 1,
    faces: Sequence[str] = ("top",),
    row_axis: int | None = None,
    element: str | None = None,
    layer_gap: float = 0.6,
    row_tolerance: float = 0.8,
) -> ase.Atoms:
    """A copy of `slab` with `rows` adjacent atom rows removed from its outermost layer on
    each face in `faces`.

    The slab is periodic in the plane of its first two cell vectors and its surfaces face
    +z ("top") and -z ("bottom"). A face's outermost layer is the `element` atoms above
    (below) the first gap in z wider than `layer_gap` A, counted from the face; its rows run
    along cell vector `row_axis` (0 or 1; None: the one whose rows lie farthest apart, the
    close-packed rows) and are told apart by their in-plane distance across that vector, atoms
    within `row_tolerance` A of each other belonging to one row. The rows removed follow
    the widest gap between rows, so the choice does not depend on atom order. Other atoms
    (an adsorbate) stay; FixAtoms constraints follow the atoms kept. `info["step_edges"]`
    says what was removed.

    Raises ValueError naming the problem: a slab not periodic in-plane, an unknown face, no
    `element` atoms, a layer with fewer than `rows` + 1 rows (no step would be left).
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    unknown = [f for f in faces if f not in FACES]
    if unknown or not faces:
        raise ValueError(f"faces must be a non-empty subset of {FACES}, got {list(faces)}")
    if not (slab.pbc[0] and slab.pbc[1]):
        raise ValueError(f"a slab must be periodic along its first two cell vectors (pbc {slab.pbc.tolist()})")
    if row_axis not in (None, 0, 1):
        raise ValueError(f"row_axis must be 0, 1 or None, got {row_axis}")
    metal = _element_atoms(slab, element)
    remove, described = [], []
    for face in faces:
        layer = outermost_layer(slab.positions[metal, 2], face, layer_gap)
        atoms = metal[layer]
        axis, groups = _rows(slab, atoms, row_axis, row_tolerance)
        if len(groups) < rows + 1:
            raise ValueError(
                f"the {face} layer of {slab.get_chemical_formula()} has {len(groups)} rows along cell vector "
                f"{axis}: removing {rows} leaves no step (row_tolerance {row_tolerance} A)"
            )
        gone = np.concatenate(groups[:rows])
        remove.extend(atoms[gone].tolist())
        described.append(f"{face}: {rows} of {len(groups)} rows along cell vector {axis} ({len(gone)} atoms)")
    out = slab.copy()
    del out[sorted(set(remove))]
    out.info["step_edges"] = "; ".join(described)
    return out


def close_packed_axis(
    slab: ase.Atoms, element: str | None = None, layer_gap: float = 0.6, row_tolerance: float = 0.8
) -> int:
    """The cell vector (0 or 1) along which the rows of the slab's top `element` layer lie
    farthest apart, the close-packed rows (`step_edges`' default row direction)."""
    metal = _element_atoms(slab, element)
    atoms = metal[outermost_layer(slab.positions[metal, 2], "top", layer_gap)]
    return _rows(slab, atoms, None, row_tolerance)[0]


def _element_atoms(slab: ase.Atoms, element: str | None) -> np.ndarray:
    """Indices of the `element` atoms (None: the most common element); a ValueError when
    there are none."""
    symbols = np.asarray(slab.get_chemical_symbols())
    if element is None:
        names, counts = np.unique(symbols, return_counts=True)
        element = str(names[np.argmax(counts)])
    metal = np.flatnonzero(symbols == element)
    if len(metal) == 0:
        raise ValueError(f"no {element} atoms in the slab ({slab.get_chemical_formula()})")
    return metal


def outermost_layer(z: np.ndarray, face: str, layer_gap: float) -> np.ndarray:
    """[n] bool: the atoms of heights `z` [n] (A) before the first gap wider than
    `layer_gap` A, counted from the top or the bottom `face`."""
    sign = 1.0 if face == "top" else -1.0
    order = np.argsort(-sign * z)
    gaps = np.abs(np.diff(z[order]))
    wide = np.flatnonzero(gaps > layer_gap)
    if len(wide) == 0:
        raise ValueError(f"no gap wider than {layer_gap} A between layers: is this a slab with its normal along z?")
    layer = np.zeros(len(z), dtype=bool)
    layer[order[: wide[0] + 1]] = True
    return layer


def _rows(slab: ase.Atoms, atoms: np.ndarray, row_axis: int | None, tolerance: float) -> tuple[int, list[np.ndarray]]:
    """(row axis, rows): each row an index array into `atoms`, rows in order across the cell
    starting after the widest gap between them."""
    if row_axis is None:
        spacing = {axis: _row_spacing(slab, atoms, axis, tolerance) for axis in (0, 1)}
        row_axis = 1 if spacing[1] > 1.01 * spacing[0] else 0  # equal spacings (a hexagonal cell): cell vector 0
    across, width = _across(slab, atoms, row_axis)
    return row_axis, _circular_clusters(across, width, tolerance)


def _across(slab: ase.Atoms, atoms: np.ndarray, row_axis: int) -> tuple[np.ndarray, float]:
    """([n] in-plane distance (A) of each atom across cell vector `row_axis`, in [0, width);
    width, the cell's extent across that vector)."""
    cell = slab.cell.array
    area = abs(np.cross(cell[0], cell[1])[2])
    width = area / np.linalg.norm(cell[row_axis][:2])
    frac = slab.get_scaled_positions(wrap=True)[atoms, 1 - row_axis]
    return frac * width, width


def _row_spacing(slab: ase.Atoms, atoms: np.ndarray, row_axis: int, tolerance: float) -> float:
    across, width = _across(slab, atoms, row_axis)
    return width / max(len(_circular_clusters(across, width, tolerance)), 1)


def _circular_clusters(x: np.ndarray, period: float, tolerance: float) -> list[np.ndarray]:
    """Indices of `x` (periodic with `period`) grouped where neighbours lie within
    `tolerance`; groups in order of x starting after the widest gap."""
    order = np.argsort(x)
    xs = x[order]
    gaps = np.append(np.diff(xs), xs[0] + period - xs[-1])  # gap after each sorted point, the last wrapping
    start = (int(np.argmax(gaps)) + 1) % len(xs)
    order, gaps = np.roll(order, -start), np.roll(gaps, -start)
    groups, current = [], [order[0]]
    for i in range(1, len(order)):
        if gaps[i - 1] > tolerance:
            groups.append(np.array(current))
            current = []
        current.append(order[i])
    groups.append(np.array(current))
    return groups

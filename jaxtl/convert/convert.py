"""mace-torch `.model` file -> jaxtl model folder, verified against mace-torch."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from jaxtl.convert.torch_reader import ConversionError, load_torch_model, read_config
from jaxtl.convert.weights import read_variables
from jaxtl.model.config import MACEConfig

TOLERANCE = {"float64": 1e-7, "float32": 1e-4}


def from_torch_module(model) -> tuple[MACEConfig, dict]:
    """(config, variables) of a loaded mace-torch model; checks the tree matches jaxtl's."""
    config = read_config(model)
    variables = read_variables(model, config)
    _check_tree(config, variables)
    return config, variables


def _paths(tree) -> set[str]:
    import jax

    return {
        "/".join(str(getattr(k, "key", k)) for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _check_tree(config: MACEConfig, variables: dict) -> None:
    import jax

    from jaxtl.convert.verify import jaxtl_batch, verification_structures
    from jaxtl.model import MACE

    atoms = verification_structures(config.atomic_numbers, config.r_max)[2:]
    batch = jaxtl_batch(atoms, config.r_max, np.float32)
    shapes = jax.eval_shape(MACE(config.replace(dtype="float32")).init, jax.random.PRNGKey(0), batch.graph)
    expected, found = _paths(shapes), _paths(variables)
    if expected != found:
        raise ConversionError(
            "the converted weights do not match jaxtl's MACE: "
            f"missing {sorted(expected - found)[:8]}, unexpected {sorted(found - expected)[:8]}"
        )


def compare_with_torch(
    torch_model,
    config: MACEConfig,
    variables: dict,
    atoms_list,
    dtype: str = "float64",
    head: str | None = None,
    backend: str = "xla",
) -> tuple[dict, dict, dict]:
    """Evaluate mace-torch and jaxtl (with `backend`) on `atoms_list`; return (largest differences,
    torch outputs, jaxtl outputs)."""
    from jaxtl.convert.torch_eval import evaluate_torch
    from jaxtl.convert.verify import compare, jaxtl_batch
    from jaxtl.loaded import build_loaded_model

    heads = config.heads
    head = head or heads[0]
    for a in atoms_list:
        a.info["head"] = head
    ref = evaluate_torch(torch_model, atoms_list, dtype=dtype, head=head, compute_stress=True)
    loaded = build_loaded_model(config, variables, dtype=dtype, head=head if len(heads) > 1 else None, backend=backend)
    batch = jaxtl_batch(atoms_list, config.r_max, np.float64 if dtype == "float64" else np.float32)
    out = {k: np.asarray(v) for k, v in loaded.predict(batch.graph, compute_stress=True).items()}
    return compare(ref, out, atoms_list), ref, out


def verify(torch_model, config: MACEConfig, variables: dict, dtype: str = "float64", head: str | None = None) -> dict:
    """Largest differences on structures made of the model's own elements (the converter's self-check).

    head: check only this head; None: every head of the model, each difference the
    largest over the heads (a multi-head file is refused if any of its heads disagrees).
    """
    from jaxtl.convert.verify import verification_structures

    worst: dict = {}
    for h in [head] if head is not None else list(config.heads):
        atoms = verification_structures(config.atomic_numbers, config.r_max)
        errors = compare_with_torch(torch_model, config, variables, atoms, dtype, h)[0]
        worst = {k: max(v, worst.get(k, v)) for k, v in errors.items()}
    return worst


def convert_file(
    in_path: str | Path,
    out_dir: str | Path,
    dtype: str | None = None,
    head: str | None = None,
    check: bool = True,
    log=print,
) -> tuple[MACEConfig, dict]:
    """Convert, verify (float64 and the target dtype), then write `out_dir`.

    Nothing is written when reading, mapping or verification fails.
    """
    from jaxtl.heads import select_head
    from jaxtl.model_io import cast_variables, save_model

    torch_model = load_torch_model(in_path)
    config, variables = from_torch_module(torch_model)
    if head is not None and head not in config.heads:
        raise ConversionError(f"{in_path}: head {head!r} is not one of {list(config.heads)}")
    dtype = dtype or config.dtype
    metadata = {"source": str(Path(in_path).absolute()), "source_dtype": config.dtype, "heads": list(config.heads)}
    if check:
        report = {}
        for check_dtype in sorted({"float64", dtype}):
            errors = verify(copy.deepcopy(torch_model), config, variables, check_dtype, head)
            report[check_dtype] = errors
            log(f"parity {check_dtype}: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
            worst = max(v for k, v in errors.items() if k.endswith("_rel") and not k.startswith("interaction"))
            if worst > TOLERANCE[check_dtype]:
                raise ConversionError(
                    f"{in_path}: jaxtl differs from mace-torch by {worst:.2e} (relative) in {check_dtype}, "
                    f"above the tolerance {TOLERANCE[check_dtype]:.0e}; nothing was written"
                )
        metadata["parity"] = report
    if head is not None:
        config, variables = select_head(config, variables, head)
        metadata["head"] = head
    config = config.replace(dtype=dtype)
    save_model(out_dir, config, cast_variables(variables, dtype), metadata)
    log(f"wrote {out_dir}")
    return config, variables

"""What the benchmarks share: the test models and cell, the two codes' sides, timing, results files.

* `build_torch_model(name)`: the MACE-MP-0 small- or medium-shaped mace-torch model of
  tests/convert/torch_models.py (89 elements, correlation 3, r_max 6 A, max_ell 3,
  randomly initialised and perturbed); `copper_cell(cells)`: a rattled Cu fcc cell
  (`cells=3`: 108 atoms, 8424 edges within 6 A).
* `TorchSide` / `JaxSide`: one code's energy+forces on one pre-built batch, callable, with
  `sync` to wait for the device; `interleaved` times sides call for call in alternation.
* `resolve_device`: 'gpu' only when both torch and jax see one (call before importing jax).
* `run_metadata` / `write_results`: every results file records the jaxtl commit, the
  command, the device, library versions and the date, as STEM.json and a STEM.md table.
* `relative_paths`: paths in or beside the checkout as the results files name them,
  relative to the repository root (`../shared/...`, `runs/...`): no machine's folders.

The scripts put this folder on `sys.path` and `import _harness as harness`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = {"small": "mp0_small", "medium": "mp0_medium"}
DTYPES = ("float32", "float64")


def resolve_device(requested: str) -> str:
    """'gpu' only when both torch and jax see a CUDA GPU; otherwise say why and use the CPU.

    Must run before jax is imported: on the CPU path JAX_PLATFORMS pins jax to the host.
    """
    if requested == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
        if "jax" in sys.modules:  # imported already (its backends start at the first computation)
            sys.modules["jax"].config.update("jax_platforms", "cpu")
        return "cpu"
    # jax would otherwise take 75 % of the GPU's memory up front, leaving torch the rest.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import torch

    reasons = []
    if not torch.cuda.is_available():
        reasons.append(f"torch {torch.__version__} sees no CUDA device")
    try:
        import jax

        if not jax.devices("gpu"):
            reasons.append("jax lists no gpu device")
    except RuntimeError as exc:  # jax raises when no gpu backend is installed
        reasons.append(f"jax has no gpu backend ({str(exc).splitlines()[0][:120]})")
    if reasons:
        print(
            f"[bench] --device gpu requested but unavailable: {'; '.join(reasons)}. Falling back to --device cpu.",
            flush=True,
        )
        try:
            import jax

            jax.config.update("jax_platforms", "cpu")
        except Exception:
            pass
        return "cpu"
    return "gpu"


def copper_cell(cells: int):
    """Rattled Cu fcc supercell: 4 * cells^3 atoms, a = 3.61 A, rattle 0.05 A (seed 42)."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((cells, cells, cells))
    atoms.rattle(stdev=0.05, seed=42)
    return atoms


def timed(fn, sync) -> float:
    t0 = time.perf_counter()
    sync(fn())
    return time.perf_counter() - t0


# Seconds of rest before each timed call. A side's worker threads keep spinning for a
# while after its call returns (torch's OpenMP threads by default): the other side's call
# would then share the cores with them. On the 2-core CPU, jaxtl's small-model call took
# ~150 ms right after a mace-torch call and ~95 ms alone.
SETTLE_S = 0.05


def interleaved(
    sides, repeats: int, warmup: int, settle: float = SETTLE_S, block: int = 1
) -> tuple[list[float], list[list[float]]]:
    """First-call seconds and timed calls of each side, alternating side by side.

    Alternating (a, b, a, b, ...) rather than timing one side's block and then the
    other's makes the ratio robust to load from other processes on a shared machine:
    both sides see the same background, call for call. Each timed call starts after
    `settle` seconds of rest, so that neither side runs among the other's spinning threads.
    With `block` > 1 each side makes `block` consecutive calls per turn (a, a, a, b, b,
    b, ...), as a training loop does; every call is timed, the first of a turn included.
    """
    first = [timed(side, side.sync) for side in sides]
    for _ in range(max(warmup - 1, 0)):
        for side in sides:
            timed(side, side.sync)
    times = [[] for _ in sides]
    while len(times[0]) < repeats:
        for k, side in enumerate(sides):
            for _ in range(min(block, repeats - len(times[k]))):
                time.sleep(settle)
                times[k].append(timed(side, side.sync))
    return first, times


class TorchSide:
    """A mace-torch model in `dtype` on `device` and one pre-built batch (mace's pipeline)."""

    def __init__(self, model, atoms, dtype: str, device: str):
        import copy

        import torch
        from mace import data as mace_data
        from mace.tools import torch_geometric, torch_tools
        from mace.tools.utils import AtomicNumberTable

        self.torch = torch
        self.dtype = dtype
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        model = copy.deepcopy(model)
        model = model.double() if dtype == "float64" else model.float()
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():  # as mace's calculator: no parameter gradients
            p.requires_grad_(False)
        z_table = AtomicNumberTable([int(z) for z in model.atomic_numbers])
        heads = list(getattr(model, "heads", None) or ["Default"])
        with torch_tools.default_dtype(dtype):
            config = mace_data.config_from_atoms(atoms, head_name=heads[0])
            data = mace_data.AtomicData.from_config(config, z_table=z_table, cutoff=float(model.r_max), heads=heads)
            batch = torch_geometric.Batch.from_data_list([data]).to(self.device)
        self.batch = batch.to_dict()
        self.n_edges = int(data.edge_index.shape[1])

    def __call__(self):
        from mace.tools import torch_tools

        with torch_tools.default_dtype(self.dtype):
            return self.model(
                self.batch,
                training=False,
                compute_force=True,
                compute_virials=False,
                compute_stress=False,
            )

    def sync(self, out):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
        return out


class JaxSide:
    """The same weights converted in memory to jaxtl; a padded graph put on the device once."""

    def __init__(self, config, variables, atoms, dtype: str, backend: str = "xla"):
        import jax
        import numpy as np

        from jaxtl.api import build_loaded_model
        from jaxtl.convert.verify import jaxtl_batch

        self.jax = jax
        self.loaded = build_loaded_model(config, variables, dtype=dtype, backend=backend)
        batch = jaxtl_batch([atoms], config.r_max, np.dtype(dtype))
        self.graph = jax.device_put(batch.graph)
        self.n_edges_padded = int(batch.graph.senders.shape[0])
        self.n_nodes_padded = int(batch.graph.positions.shape[0])

    def __call__(self):
        return self.loaded.predict(self.graph, compute_stress=False)

    def sync(self, out):
        return self.jax.block_until_ready(out)

    def flops(self):
        """XLA's own FLOP estimate of the compiled energy+forces (None if unavailable)."""
        try:
            compiled = self.loaded._predict.lower(self.loaded.variables, self.graph, False).compile()
            cost = compiled.cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            return float(cost.get("flops")) if cost and "flops" in cost else None
        except Exception:  # cost analysis is advisory
            return None


def build_torch_model(name: str):
    """The perturbed float64 mace-torch factory model of tests/convert/torch_models.py."""
    import mace  # noqa: F401  (before e3nn, as everywhere in jaxtl)

    # Loaded by path: an installed package called `tests` may shadow the repository's.
    path = ROOT / "tests" / "convert" / "torch_models.py"
    spec = importlib.util.spec_from_file_location("jaxtl_bench_torch_models", path)
    torch_models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(torch_models)

    model, _ = torch_models.REGISTRY[MODELS[name]](seed=0)
    return model


def jaxtl_commit() -> str:
    """The checkout's commit, with "+dirty" when tracked files differ from it ("unknown" outside git)."""
    from jaxtl.provenance import jaxtl_commit as commit

    return commit()


@contextlib.contextmanager
def swapped(module, name, value):
    """`module.name` set to `value` inside the block (an A/B of one function in one process)."""
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


# distribution name -> key in the results files' "versions"
PACKAGES = {
    "jax": "jax",
    "jaxlib": "jaxlib",
    "flax": "flax",
    "optax": "optax",
    "e3nn-jax": "e3nn_jax",
    "numpy": "numpy",
    "torch": "torch",
    "mace-torch": "mace",
    "cuequivariance-jax": "cuequivariance_jax",
    "ase": "ase",
    "ace-jax": "ace_jax",
    "vesin": "vesin",
}


def hardware_line() -> str:
    """The CPU's architecture and core count, for a results file."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def library_versions() -> dict:
    """Installed versions of the libraries the benchmarks touch (from package metadata: nothing imported)."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist, key in PACKAGES.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def relative_paths(obj):
    """`obj` (a path, or a dict or list holding paths) with every absolute path in or beside the
    checkout made relative to the repository root: the shared mirror as ../shared/..., run
    folders as runs/... (results files name no machine's folders). Anything else is kept."""
    if isinstance(obj, dict):
        return {k: relative_paths(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [relative_paths(v) for v in obj]
    text = str(obj) if isinstance(obj, Path) else obj
    if isinstance(text, str) and ROOT.parent != Path(ROOT.anchor) and text.startswith(str(ROOT.parent) + os.sep):
        return os.path.relpath(text, ROOT)
    return obj


def run_metadata(script: str, argv: Sequence[str] | None) -> dict:
    """The jaxtl commit, library versions, date, heap settings and the command line that reproduces the run."""
    from jaxtl import _allocator
    from jaxtl.cpu import cpu_settings

    args = sys.argv[1:] if argv is None else argv
    return {
        "jaxtl_commit": jaxtl_commit(),
        "versions": library_versions(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "malloc_hugetlb": _allocator.active(),  # see jaxtl/_allocator.py
        "heap_settings": _allocator.heap_settings_made(),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "cpu_settings": dataclasses.asdict(settings) if (settings := cpu_settings()) else None,
        "command": f"python benchmarks/{script} " + shlex.join(args),
    }


def write_results(stem: Path, meta: dict, rows: list, markdown: Callable[[list, dict], str]) -> str:
    """STEM.json ({"meta", "rows"}) and STEM.md (the table, also printed), with the run's provenance."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    table = markdown(rows, meta)
    if "malloc_hugetlb" in meta:
        table += (
            "\nProcess: glibc huge pages for large allocations "
            f"{'on' if meta['malloc_hugetlb'] else 'off'} (`GLIBC_TUNABLES={meta.get('glibc_tunables', '')}`, "
            "set by the script's restart as by the `jaxtl` command; see jaxtl/_allocator.py)"
            + (
                ", jaxtl's heap settings made with `mallopt` by `jaxtl.configure_cpu()`"
                if meta.get("heap_settings") and not meta["malloc_hugetlb"]
                else ""
            )
            + ".\n"
        )
    if "jaxtl_commit" in meta:
        table += f"\njaxtl commit `{meta['jaxtl_commit']}`; versions {meta['versions']}; {meta['date']}.\n"
    stem.with_suffix(".md").write_text(table)
    print(table)
    return table

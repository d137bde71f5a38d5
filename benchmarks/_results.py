"""What every benchmark script writes: its metadata and rows as JSON, its table as Markdown."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence


def run_metadata(script: str, argv: Optional[Sequence[str]]) -> dict:
    """Versions, date and the command line that reproduces the run."""
    import jax
    import mace
    import torch

    from jaxtl import _allocator
    from jaxtl.cpu import cpu_settings

    args = sys.argv[1:] if argv is None else argv
    return {"versions": {"jax": jax.__version__, "torch": torch.__version__,
                         "mace": getattr(mace, "__version__", "?"), "python": platform.python_version()},
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "malloc_hugetlb": _allocator.active(),  # see jaxtl/_allocator.py
            "heap_settings": _allocator.heap_settings_made(),
            "cpu_settings": dataclasses.asdict(settings) if (settings := cpu_settings()) else None,
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
            "command": f"python benchmarks/{script} " + " ".join(args)}


def write_results(stem: Path, meta: dict, rows: list, markdown: Callable[[list, dict], str]) -> str:
    """STEM.json ({"meta", "rows"}) and STEM.md (the table, also printed)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    table = markdown(rows, meta)
    if "malloc_hugetlb" in meta:
        table += ("\nProcess: glibc huge pages for large allocations "
                  f"{'on' if meta['malloc_hugetlb'] else 'off'} (`GLIBC_TUNABLES={meta.get('glibc_tunables', '')}`, "
                  "set by the script's restart as by the `jaxtl` command; see jaxtl/_allocator.py)"
                  + (", jaxtl's heap settings made with `mallopt` by `jaxtl.configure_cpu()`" if meta.get("heap_settings")
                     and not meta["malloc_hugetlb"] else "") + ".\n")
    stem.with_suffix(".md").write_text(table)
    print(table)
    return table

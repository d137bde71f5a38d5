"""`distill` in a two-process job (jax.distributed on 127.0.0.1, gloo CPU collectives): process 0
labels and scores, the MACE student trains over both processes' devices, and the job gives the
student and report of one process with two devices.

Three processes of about a minute each on a 2-core CPU: in the slow set
(`python -m pytest -m slow tests/distill/test_distill_distributed.py`)."""

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "train"))
from hcu import h_on_cu, write_structures  # noqa: E402
from test_distributed import _run  # noqa: E402

from jaxtl.train.checkpoint import load_model_variables  # noqa: E402

SCRIPT = HERE / "run_distill_process.py"


@pytest.mark.slow
def test_two_processes_distill_as_one_process_with_two_devices(teacher_dir, tmp_path):
    starts = write_structures(tmp_path / "starts.xyz", [h_on_cu(i, periodic=False) for i in range(12)])
    runs = {}
    for name, processes, devices in (("single", 1, 2), ("pair", 2, 1)):
        runs[name] = _run(tmp_path / name, processes, devices, script=[SCRIPT, teacher_dir, starts, tmp_path / name])
    single, pair = (json.loads((runs[name] / "report.json").read_text()) for name in ("single", "pair"))
    assert pair["n_structures"] == single["n_structures"]
    assert pair["training"]["epochs"] == single["training"]["epochs"] == 2
    for key in ("student_vs_teacher", "student_vs_teacher_by_set"):
        assert json.dumps(pair[key], sort_keys=True) != "{}"
        np.testing.assert_allclose(_numbers(pair[key]), _numbers(single[key]), rtol=1e-9)
    a = load_model_variables(runs["single"] / "student" / "model")
    b = load_model_variables(runs["pair"] / "student" / "model")
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-14), a, b)
    # labelled and written once, by process 0
    assert [json.loads((runs["pair"] / f"labelled-{i}.json").read_text()) for i in (0, 1)] == [12, 0]
    assert (runs["pair"] / "student" / "training.json").exists() and (runs["pair"] / "distill_config.yaml").exists()


def _numbers(tree) -> list[float]:
    """The numbers of a nested report section, in key order."""
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in _numbers(tree[k])]
    return [float(tree)] if isinstance(tree, (int, float)) and tree is not None else []

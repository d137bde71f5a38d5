"""Fine-tuning strategies: a reparametrisation of chosen weights plus labels for the optimiser.

A strategy is (a) a reparametrisation -- the trainer optimises a tree
`{"base": params, "adapters": {kind: ...}}` and the model sees
`materialise(tree)` -- and (b) a label pytree over that tree for
`optax.multi_transform` (`jaxtl.train.make_optimizer`). Freezing is the case with
no reparametrisation: the tree is the parameter tree itself. Replay adds
pseudolabelled structures to the data and leaves the parameters alone.

    naive            every weight trains
    freeze           `--freeze N` / patterns / soft factors (`jaxtl.finetune.freeze`)
    lora             W = W0 + (alpha/r) A B on chosen weights, W0 frozen (`lora.py`)
    magnitude        W * s per output irrep channel, W frozen (`magnitude.py`)
    replay           + foundation-labelled structures in the loss (`replay.py`)
    replay+lora ...  '+' combines parts: freeze, lora, magnitude, replay

The model is untouched: `reparametrise(predict_fn)` wraps the model call, so the
training engine (steps, EMA, checkpoints, resume) runs as for any parameter tree,
and frozen leaves get no optimiser state (`optax.set_to_zero`). `merge` folds the
adapters into plain weights: the result is an ordinary jaxtl parameter tree.

    strategy = make_strategy("lora", lora_rank=4)
    tree = strategy.init(params, seed=0)               # starts exactly at params
    labels = strategy.labels(tree, base_labels)        # base frozen, adapters trainable
    predict = strategy.reparametrise(make_predict(MACE(config)))
    params = strategy.merge(trained_tree)              # save with jaxtl.model_io.save_model
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import numpy as np

from jaxtl.finetune.freeze import FROZEN, TRAINABLE, group_of, path_str
from jaxtl.finetune.lora import LoRA
from jaxtl.finetune.magnitude import Magnitude
from jaxtl.finetune.replay import Replay
from jaxtl.finetune.report import FreezeReport, _nbytes, describe

STRATEGIES = ("naive", "freeze", "lora", "magnitude", "replay", "replay+lora")
PARTS = ("naive", "freeze", "lora", "magnitude", "replay")
BASE, ADAPTERS = "base", "adapters"
Reparametrisation = LoRA | Magnitude


@dataclasses.dataclass(frozen=True)
class Strategy:
    """What a fine-tune trains and on which data.

    Attributes:
        name: e.g. "lora" or "replay+lora" (see `make_strategy`).
        reparametrisations: applied in order to the base weights (LoRA, Magnitude).
        replay: the pseudolabelled replay set, or None.
        naive: every base weight trains; freezing options are refused.
    """

    name: str = "freeze"
    reparametrisations: tuple[Reparametrisation, ...] = ()
    replay: Replay | None = None
    naive: bool = False

    def __post_init__(self):
        kinds = [r.kind for r in self.reparametrisations]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"each reparametrisation kind may appear once, got {kinds}")

    @property
    def reparametrised(self) -> bool:
        return bool(self.reparametrisations)

    def init(self, params, seed: int = 0):
        """The tree the optimiser trains: `params` itself, or {"base": params, "adapters": ...}."""
        if not self.reparametrised:
            return params
        return {BASE: params, ADAPTERS: {r.kind: r.init(params, seed) for r in self.reparametrisations}}

    def materialise(self, tree):
        """The parameters the model uses (jit-able, differentiable in the adapters)."""
        if not self.reparametrised:
            return tree
        params = tree[BASE]
        for r in self.reparametrisations:
            params = r.apply(params, tree[ADAPTERS][r.kind])
        return params

    def merge(self, tree) -> dict:
        """Plain parameters (numpy) with the adapters folded in, for `save_model`."""
        return jax.tree.map(np.asarray, self.materialise(tree))

    def adapted_paths(self, params) -> set[str]:
        return {p for r in self.reparametrisations for p in r.targets(params)}

    def labels(self, tree, base_labels):
        """Labels of the optimised tree: `base_labels` on the base (adapted weights always
        frozen: W0 stays the foundation's), every adapter leaf trainable."""
        if not self.reparametrised:
            return base_labels
        adapted = self.adapted_paths(tree[BASE])
        base = jax.tree_util.tree_map_with_path(
            lambda p, label: FROZEN if path_str(p) in adapted else label, base_labels
        )
        return {BASE: base, ADAPTERS: jax.tree.map(lambda _: TRAINABLE, tree[ADAPTERS])}

    def reparametrise(self, predict_fn: Callable) -> Callable:
        """`predict(variables, graph, compute_stress)` taking the optimised tree as params."""
        if not self.reparametrised:
            return predict_fn

        def predict(variables, graph, compute_stress=False):
            return predict_fn({**variables, "params": self.materialise(variables["params"])}, graph, compute_stress)

        return predict

    def decay_filter(self, decay_filter: Callable | None) -> Callable | None:
        """A weight-decay filter over the optimised tree: `decay_filter` on base paths, none on adapters."""
        if decay_filter is None or not self.reparametrised:
            return decay_filter

        def on_tree(path, leaf):
            return getattr(path[0], "key", None) == BASE and decay_filter(path[1:], leaf)

        return on_tree

    def group(self, path: str) -> str:
        """The parameter group of an optimised-tree path (embedding, interactions, ...)."""
        if self.reparametrised:
            head, _, rest = path.partition("/")
            path = rest.partition("/")[2] if head == ADAPTERS else rest
        return group_of(path)

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "naive": self.naive,
            "reparametrisations": [{"kind": r.kind, **dataclasses.asdict(r)} for r in self.reparametrisations],
        }
        if self.replay is not None:
            out["replay"] = self.replay.to_dict()
        return out


def make_strategy(
    name: str = "freeze",
    *,
    lora_rank: int | None = None,
    lora_alpha: float | None = None,
    adapter_patterns: Sequence[str] | None = None,
    replay_size: int | None = None,
    replay_weight: float | None = None,
    replay_files: Sequence[str] = (),
    replay_rattle: float | None = None,
    seed: int = 0,
) -> Strategy:
    """A `Strategy` from its name ('+'-joined parts of naive, freeze, lora, magnitude, replay).

    lora_rank (default 4), lora_alpha (default rank): LoRA settings.
    adapter_patterns: globs over parameter paths for LoRA/magnitude (default: see `LoRA`, `Magnitude`).
    replay_size, replay_weight (default 1), replay_files, replay_rattle (A, default 0.05): see `Replay`.
    An option for a part the name does not hold is an error (it would silently do nothing).
    """
    parts = [p.strip() for p in name.split("+")]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"unknown strategy {name!r}; use one of {STRATEGIES} or '+'-joined {PARTS}")
    if "naive" in parts and set(parts) & {"freeze", "lora", "magnitude"}:
        raise ValueError(
            f"strategy {name!r}: naive trains every weight and cannot be combined with freeze, lora or magnitude"
        )
    given = lambda *xs: any(x is not None for x in xs)  # noqa: E731
    if "lora" not in parts and given(lora_rank, lora_alpha):
        raise ValueError(f"lora_rank/lora_alpha need a lora strategy, not {name!r}")
    if not set(parts) & {"lora", "magnitude"} and adapter_patterns is not None:
        raise ValueError(f"adapter_patterns need a lora or magnitude strategy, not {name!r}")
    if "replay" not in parts and (given(replay_size, replay_weight, replay_rattle) or replay_files):
        raise ValueError(f"replay_size/replay_weight/replay_files/replay_rattle need a replay strategy, not {name!r}")
    patterns = None if adapter_patterns is None else tuple(adapter_patterns)
    reparams = []
    if "lora" in parts:
        reparams.append(LoRA(rank=4 if lora_rank is None else lora_rank, alpha=lora_alpha, patterns=patterns))
    if "magnitude" in parts:
        reparams.append(Magnitude(patterns=patterns))
    replay = None
    if "replay" in parts:
        replay = Replay(
            size=replay_size,
            weight=1.0 if replay_weight is None else replay_weight,
            files=tuple(replay_files),
            rattle=0.05 if replay_rattle is None else replay_rattle,
            seed=seed,
        )
    return Strategy("+".join(parts), tuple(reparams), replay, naive="naive" in parts)


# ---------------------------------------------------------------- the dry run


@dataclasses.dataclass(frozen=True)
class StrategyReport:
    """What a strategy trains.

    Attributes:
        strategy: the strategy's name.
        params: the label report over the optimised tree (base and adapters).
        adapted: (kind, weight path, weight shape, adapter parameters) per adapted weight.
        skipped: (path, shape) of default LoRA targets smaller than the rank (left as they are).
        n_foundation: parameters of the foundation.
        state_bytes: optimiser state this strategy allocates.
        state_bytes_naive: optimiser state of full fine-tuning (every foundation weight trains).
        replay: one line on the replay set, or None.
    """

    strategy: str
    params: FreezeReport
    adapted: tuple = ()
    skipped: tuple = ()
    n_foundation: int = 0
    state_bytes: int = 0
    state_bytes_naive: int = 0
    replay: str | None = None

    def __getattr__(self, name):
        # the label report's fields (leaves, by_label, by_group, ...) read through
        if name == "params":
            raise AttributeError(name)
        return getattr(self.params, name)

    @property
    def n_params(self) -> int:
        return self.params.n_params

    @property
    def n_trainable(self) -> int:
        return self.params.n_trainable

    @property
    def n_frozen(self) -> int:
        return self.params.n_frozen

    @property
    def n_adapter(self) -> int:
        return sum(n for *_, n in self.adapted)

    def frozen_paths(self) -> list[str]:
        return self.params.frozen_paths()

    def trainable_paths(self) -> list[str]:
        return self.params.trainable_paths()

    def summary(self) -> str:
        share = 100 * self.n_trainable / max(self.n_foundation, 1)
        return (
            f"strategy {self.strategy}: trains {self.n_trainable} parameters ({share:.2f} % of the "
            f"foundation's {self.n_foundation}); optimiser state {self.state_bytes} bytes "
            f"(full fine-tuning: {self.state_bytes_naive})"
        )

    def __str__(self) -> str:
        lines = str(self.params).splitlines()[:-1]  # its optimiser line counts the adapters as "full"
        if self.adapted:
            by_kind: dict = {}
            for kind, *_, n in self.adapted:
                count, total = by_kind.get(kind, (0, 0))
                by_kind[kind] = (count + 1, total + n)
            lines.append(
                "adapters: " + "; ".join(f"{k} on {c} weights ({n} parameters)" for k, (c, n) in by_kind.items())
            )
        if self.skipped:
            lines.append(
                "left unadapted (smaller than the LoRA rank): " + ", ".join(f"{p} {s}" for p, s in self.skipped)
            )
        if self.replay:
            lines.append(self.replay)
        lines.append(self.summary())
        return "\n".join(lines)


def describe_strategy(
    strategy: Strategy, params, tree, labels, optimizer: Callable | None = None, replay: str | None = None
) -> StrategyReport:
    """The dry-run report of `strategy` on foundation `params` (optimised `tree`, `labels`).

    optimizer: `labels -> optax transformation`, to size the optimiser state exactly
        (`jax.eval_shape`); None: Adam's two moments per trainable leaf.
    """
    report = describe(tree, labels, optimizer=optimizer, group=strategy.group)
    adapted = tuple((r.kind, *row) for r in strategy.reparametrisations for row in r.describe(params))
    skipped = tuple(s for r in strategy.reparametrisations for s in r.skipped(params))
    n_foundation = int(sum(np.size(x) for x in jax.tree.leaves(params)))
    if optimizer is None:
        state = report.state_bytes_full - report.state_bytes_saved
        naive = report.moments * _nbytes(params)
    else:
        state = _nbytes(jax.eval_shape(optimizer(labels).init, tree))
        naive = _nbytes(jax.eval_shape(optimizer(jax.tree.map(lambda _: TRAINABLE, params)).init, params))
    return StrategyReport(strategy.name, report, adapted, skipped, n_foundation, int(state), int(naive), replay)

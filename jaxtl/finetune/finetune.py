"""`finetune`: foundation model + new DFT data -> a fine-tuned model folder.

    config = FinetuneConfig(
        foundation=FoundationConfig("spice_mace.model"),
        data=DataConfig(train_file="aspirin.xyz", batch_size=5),
        strategy=StrategyConfig(freeze=6),
        train=TrainConfig(max_num_epochs=50),
    )
    finetune(config, "runs/aspirin_f6")

Steps: load the foundation (a jaxtl model folder, or a mace-torch `.model` converted
into OUT/foundation), check the data's elements, refit the E0s (`jaxtl.finetune.e0s`),
label the parameters (`jaxtl.finetune.freeze`) or set up a strategy's adapters and
replay set (`jaxtl.finetune.strategies`), train with `jaxtl.train.train` (frozen
leaves: no update, no optimiser state, no gradient), and write OUT/model, a model
folder like any other (`jaxtl.load_model`, MACECalculator) with any adapters merged.

    StrategyConfig("replay+lora", lora_rank=4, replay_weight=0.5)   # adapters and replay
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.api import LoadedModel, build_loaded_model, enable_x64_if
from jaxtl.config_io import record_config
from jaxtl.finetune.config import CONFIG_FILE, RESUME_MAY_CHANGE, FinetuneConfig, StrategyConfig
from jaxtl.finetune.e0s import fit_e0s
from jaxtl.finetune.freeze import (
    FROZEN,
    freeze_labels,
    group_of,
    lr_factor_transforms,
    map_paths,
    path_str,
    pattern_labels,
    soft_labels,
)
from jaxtl.finetune.gradients import stop_frozen_gradients
from jaxtl.finetune.replay import describe_replay, pseudolabel, replay_structures
from jaxtl.finetune.strategies import Strategy, StrategyReport, describe_strategy, make_strategy
from jaxtl.graph import Configuration, GraphDataset, batch_iterator, check_elements, choose_budgets
from jaxtl.heads import select_head
from jaxtl.model import MACE, MACEConfig, make_predict
from jaxtl.model_io import cast_variables, load_model_files, save_model
from jaxtl.train import make_optimizer, train
from jaxtl.train.data import DataConfig, Splits, read_splits
from jaxtl.train.distributed import is_primary
from jaxtl.train.loop import TrainResult

Freeze = int | None | Callable[[Any], Any] | Mapping


@dataclasses.dataclass
class FinetuneResult:
    """model_dir: OUT/model (None for a dry run); report: what the strategy trains
    (labels, adapters, optimiser memory); atomic_energies: the E0s used
    [n_heads, n_elements] (eV); labels: over the optimised tree (the parameters, or
    {"base", "adapters"}); train: the engine's result (its variables hold the
    unmerged tree); frozen_unchanged: every frozen leaf bit-identical to the
    foundation's; wall_s, steps_per_s: training time; strategy: the strategy used;
    n_replay: replay structures trained on."""

    model_dir: Path | None
    report: StrategyReport
    atomic_energies: np.ndarray
    labels: Any
    train: TrainResult | None = None
    frozen_unchanged: bool | None = None
    wall_s: float | None = None
    steps_per_s: float | None = None
    strategy: Strategy | None = None
    n_replay: int = 0


def mace_decay_filter(path, leaf) -> bool:
    """mace-torch's weight-decay groups: interactions' `linear` weights and all products."""
    p = path_str(path)
    return group_of(p) == "products" or (group_of(p) == "interactions" and p.split("/")[1] == "linear")


def load_foundation(
    foundation: str | Path | LoadedModel,
    out_dir: Path,
    head: str | None = None,
    check_conversion: bool = True,
    log=print,
) -> tuple[MACEConfig, dict, dict]:
    """(config, variables as numpy, metadata) of a model folder, a LoadedModel or a
    mace-torch `.model` file (converted into out_dir/foundation), or a released model's
    name (`jaxtl.foundations`, converted once into the cache)."""
    if isinstance(foundation, LoadedModel):
        config, variables, meta = (
            foundation.config,
            jax.tree.map(np.asarray, foundation.variables),
            dict(foundation.metadata),
        )
    else:
        path = Path(foundation)
        if not path.exists():  # a released model's name: its converted folder in the cache
            from jaxtl.foundations import resolve

            path = resolve(foundation, log=log)
        if path.is_file():
            from jaxtl.convert.convert import convert_file  # the only door to torch

            log(f"converting {path} into {out_dir / 'foundation'}")
            convert_file(path, out_dir / "foundation", check=check_conversion, log=log)
            path = out_dir / "foundation"
        config, variables, meta = load_model_files(path)
        meta = {**meta, "foundation": str(Path(foundation).absolute()) if Path(foundation).exists() else foundation}
    if head is not None:
        config, variables = select_head(config, variables, head)
    elif len(config.heads) > 1:
        raise ValueError(f"the foundation has heads {list(config.heads)}: choose one with head=...")
    return config, variables, meta


def resolve_labels(
    params,
    config: MACEConfig,
    freeze: Freeze = None,
    counting: str = "mace",
    lr_factors: Mapping[str, float] | None = None,
):
    """Labels from `freeze`: an int (--freeze N, `counting` "mace" or "paper"), a label
    pytree, or a function params -> labels; then `lr_factors` (soft freezing)."""
    if freeze is None or isinstance(freeze, int):
        labels = freeze_labels(params, freeze, counting, config)
    elif callable(freeze):
        labels = freeze(params)
    else:
        labels = freeze
    if lr_factors:
        labels = soft_labels(params, lr_factors, base=labels)
    return labels


def strategy_base_labels(
    strategy: Strategy, params, config: MACEConfig, settings: StrategyConfig, labels: Freeze = None
):
    """Labels of the foundation's weights under `strategy`: from the freezing fields of
    `settings` (or `labels`, a label pytree or a function params -> labels, instead)
    when given; else all trainable, or all frozen for a strategy with adapters (LoRA,
    magnitude: only the adapters train)."""
    if labels is not None and (settings.freeze is not None or settings.freeze_patterns or settings.train_patterns):
        raise ValueError("give either labels or the strategy's freeze/freeze_patterns/train_patterns, not both")
    chosen = labels is not None or settings.chooses_labels
    if strategy.naive and chosen:
        raise ValueError(
            "strategy naive trains every weight; drop the freezing fields (freeze, freeze_patterns, "
            "train_patterns, lr_factors) or use strategy freeze"
        )
    if strategy.reparametrised and not chosen:
        return map_paths(lambda _: FROZEN, params)
    freeze = labels if labels is not None else settings.freeze
    if settings.freeze_patterns or settings.train_patterns:
        fp, tp = list(settings.freeze_patterns), list(settings.train_patterns)
        freeze = lambda p: pattern_labels(p, freeze=fp, train=tp)  # noqa: E731
    return resolve_labels(params, config, freeze, settings.counting, settings.lr_factors)


def foundation_energies(config: MACEConfig, variables: dict, r_max: float, batch_size: int = 16):
    """configs -> the foundation's total energies [n] (eV), for E0s "estimated"."""

    def energies(configs: Sequence[Configuration]) -> np.ndarray:
        enable_x64_if(config.dtype)
        predict = jax.jit(make_predict(MACE(config)), static_argnums=2)
        arrays = jax.tree.map(jnp.asarray, variables)
        configs = [dataclasses.replace(c, head=config.heads[0]) for c in configs]
        dataset = GraphDataset(configs, r_max, heads=config.heads, progress=False)
        out = np.zeros(len(configs))
        epoch = batch_iterator(dataset, batch_size, shuffle=False, dtype=np.dtype(config.dtype))
        for (_, members), batch in zip(epoch.plan, epoch):
            out[members] = np.asarray(predict(arrays, batch.graph, False)["energy"])[: len(members)]
        return out

    return energies


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def make_strategy_of(settings: StrategyConfig, seed: int) -> Strategy:
    """The `Strategy` a `StrategyConfig` names (its replay set drawn with `seed`)."""
    return make_strategy(
        settings.name,
        lora_rank=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        adapter_patterns=settings.adapter_patterns,
        replay_size=settings.replay_size,
        replay_weight=settings.replay_weight,
        replay_files=list(settings.replay_files),
        replay_rattle=settings.replay_rattle,
        seed=seed,
    )


def read_finetune_data(data: DataConfig, config: MACEConfig) -> Splits:
    """The splits of `data`, every structure on the foundation's (single) head.

    Raises:
        DataError: an element the foundation does not know (names element, file, frame).
    """
    splits = read_splits(data)
    head = config.heads[0]
    splits = dataclasses.replace(
        splits,
        **{
            name: [dataclasses.replace(c, head=head) for c in getattr(splits, name)]
            for name in ("train", "valid", "test")
        },
    )
    for configs in (splits.train, splits.valid, splits.test):
        check_elements(configs, config.atomic_numbers)
    return splits


def refit_e0s(
    config: MACEConfig, variables: dict, splits: Splits, e0s, batch_size: int, dtype: str, log: Callable[[str], None]
) -> tuple[MACEConfig, dict]:
    """(config, variables) in `dtype` with the E0s refitted on the training data (`fit_e0s`)."""
    atomic_energies = fit_e0s(
        splits.train,
        config.atomic_numbers,
        np.asarray(variables["constants"]["atomic_energies"]),
        e0s,
        foundation_energies(config, variables, config.r_max, batch_size),
        isolated=splits.isolated,
    )
    log("E0s (eV): " + ", ".join(f"Z={z}: {e:.6f}" for z, e in zip(config.atomic_numbers, atomic_energies[0])))
    variables = {
        "params": variables["params"],
        "constants": {**variables["constants"], "atomic_energies": atomic_energies},
    }
    return config.replace(dtype=dtype), cast_variables(variables, dtype)


def finetune(
    config: FinetuneConfig,
    out_dir: str | Path,
    *,
    labels: Freeze = None,
    resume: bool = False,
    dry_run: bool = False,
    decay_filter: Callable | None = mace_decay_filter,
    log: Callable[[str], None] = print,
) -> FinetuneResult:
    """Fine-tune `config.foundation` on `config.data` and write `out_dir/model`.

    Args:
        config: foundation, data, strategy, optimisation and E0s (`FinetuneConfig`);
            saved as out_dir/finetune_config.yaml.
        out_dir: the run folder (checkpoints, logs, out_dir/model).
        labels: a label pytree or a function params -> labels ruling the foundation's
            weights, instead of the strategy's freeze/freeze_patterns/train_patterns.
        resume: continue an interrupted run in `out_dir` exactly (same config, a larger
            `train.max_num_epochs` allowed).
        dry_run: stop after logging what the strategy trains (no training, no model).
        decay_filter: (path, leaf) -> whether weight decay applies (mace-torch groups).
        log: where progress lines go.

    Raises:
        DataError: an element the foundation does not know (names element, file, frame),
            in the training data or the replay set.
        ValueError: an adapter pattern that matches nothing, a LoRA rank above a chosen
            weight's dimensions, a strategy field the strategy does not use, a resumed
            run whose config differs (naming the fields).
    """
    custom_labels = labels is not None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config.train
    enable_x64_if(cfg.dtype)
    strategy = make_strategy_of(config.strategy, cfg.seed)
    if not dry_run:
        record_config(config, out / CONFIG_FILE, resume, may_change=RESUME_MAY_CHANGE, write=is_primary())

    setup = _set_up(config, strategy, out, labels, decay_filter, log)
    log(str(setup.report))
    if dry_run:
        return FinetuneResult(None, setup.report, setup.atomic_energies, setup.labels, strategy=strategy)

    replay = _label_replay(setup, strategy, config, log)
    run = _Run(
        config,
        setup.model_config,
        setup.variables["constants"],
        strategy,
        setup.tree,
        setup.labels,
        setup.report,
        setup.meta,
        setup.splits,
        replay,
        custom_labels,
    )
    result, n_steps, train_time, wall = run.train(out, setup.decay_filter, resume)
    log(setup.report.summary())
    log(f"wrote {out / 'model'} ({n_steps} steps in {train_time:.1f} s)")
    # frozen_unchanged: write_model compared every frozen leaf before writing and raises otherwise
    return FinetuneResult(
        out / "model",
        setup.report,
        setup.atomic_energies,
        setup.labels,
        result,
        True,
        wall,
        n_steps / train_time if train_time > 0 else None,
        strategy,
        len(replay),
    )


@dataclasses.dataclass(frozen=True)
class _Setup:
    """A fine-tuning run before training: the foundation on the new data, and what the
    strategy trains.

    Attributes:
        model_config, variables: the foundation in the training dtype, its E0s refitted.
        meta: the foundation's metadata.
        teacher: (config, variables) of the foundation as loaded; it labels the replay set.
        splits: the new data, on the foundation's head.
        tree, labels: the optimised tree (the parameters, or {"base", "adapters"}) and its labels.
        decay_filter: the strategy's weight-decay selection.
        replay_set: the replay structures, unlabelled (None without replay).
        report: what the strategy trains (`StrategyReport`).
    """

    model_config: MACEConfig
    variables: dict
    meta: dict
    teacher: tuple[MACEConfig, dict]
    splits: Splits
    tree: Any
    labels: Any
    decay_filter: Callable | None
    replay_set: list | None
    report: StrategyReport

    @property
    def atomic_energies(self) -> np.ndarray:
        """The refitted E0s [n_heads, n_elements] (eV)."""
        return np.asarray(self.variables["constants"]["atomic_energies"])


def _set_up(
    config: FinetuneConfig, strategy: Strategy, out: Path, labels: Freeze, decay_filter, log: Callable[[str], None]
) -> _Setup:
    """Load the foundation, read the data and refit the E0s, then set up the strategy's
    tree, labels, weight decay and replay set (see `finetune`)."""
    cfg, data = config.train, config.data
    f = config.foundation
    model_config, variables, meta = load_foundation(f.model, out, f.head, f.check_conversion, log)
    splits = read_finetune_data(data, model_config)
    teacher = (model_config, variables)  # the foundation as it is labels the replay set
    model_config, variables = refit_e0s(model_config, variables, splits, config.e0s, data.batch_size, cfg.dtype, log)

    params = variables["params"]
    tree = strategy.init(params, seed=cfg.seed)
    labels = strategy.labels(tree, strategy_base_labels(strategy, params, model_config, config.strategy, labels))
    decay_filter = strategy.decay_filter(decay_filter)
    replay_set = replay_line = None
    if strategy.replay is not None:
        replay_set = replay_structures(strategy.replay, splits.train, model_config.atomic_numbers)
        replay_line = describe_replay(strategy.replay, replay_set)
    report = describe_strategy(
        strategy,
        params,
        tree,
        labels,
        optimizer=lambda l: make_optimizer(cfg.optimizer, l, lr_factor_transforms(l), decay_filter),
        replay=replay_line,
    )
    return _Setup(model_config, variables, meta, teacher, splits, tree, labels, decay_filter, replay_set, report)


def _label_replay(setup: _Setup, strategy: Strategy, config: FinetuneConfig, log: Callable[[str], None]) -> list:
    """The replay structures labelled by the foundation (on the refitted E0s); [] without replay."""
    if not setup.replay_set:
        return []
    teacher_config, teacher_variables = setup.teacher
    replay = pseudolabel(
        build_loaded_model(teacher_config, teacher_variables, dtype=config.train.dtype),
        setup.replay_set,
        strategy.replay,
        setup.model_config.heads[0],
        np.asarray(teacher_variables["constants"]["atomic_energies"])[0],
        setup.atomic_energies[0],
        config.data.batch_size,
    )
    log(f"labelled {len(replay)} replay structures with the foundation")
    return replay


@dataclasses.dataclass
class _Run:
    """A prepared fine-tuning run: batches, the reparametrised model and the final write."""

    config: FinetuneConfig
    model_config: MACEConfig
    constants: dict
    strategy: Strategy
    tree: Any
    labels: Any
    report: StrategyReport
    meta: dict
    splits: Splits
    replay: list
    custom_labels: bool

    def __post_init__(self):
        c = self.model_config
        self.train_configs = self.splits.train + self.replay
        self.train_set = GraphDataset(self.train_configs, c.r_max, heads=c.heads, progress=False)
        self.budgets = choose_budgets(self.train_set, self.config.data.batch_size)

    def train_batches(self, epoch: int) -> list:
        cfg, data = self.config.train, self.config.data
        batches = batch_iterator(
            self.train_set,
            data.batch_size,
            self.budgets,
            shuffle=True,
            seed=cfg.seed,
            epoch=epoch,
            dtype=np.dtype(cfg.dtype),
        )
        if not self.replay:
            return list(batches)
        # with their config types, so the training metrics show the replay error apart
        return [
            (b, [self.train_configs[i].config_type for i in members]) for (_, members), b in zip(batches.plan, batches)
        ]

    def fixed_batches(self, configs) -> list:
        """Evaluation batches of `configs` in file order."""
        if not configs:
            return []
        c = self.model_config
        dataset = GraphDataset(configs, c.r_max, heads=c.heads, progress=False)
        return list(
            batch_iterator(
                dataset, self.config.data.valid_batch_size, shuffle=False, dtype=np.dtype(self.config.train.dtype)
            )
        )

    def metadata(self, wall: float | None) -> dict:
        s, report, e0s = self.config.strategy, self.report, self.config.e0s
        freeze = (
            s.freeze
            if s.freeze is not None
            else ("custom" if self.custom_labels or s.freeze_patterns or s.train_patterns else None)
        )
        return {
            **self.meta,
            "finetune": {
                "train_file": str(Path(self.config.data.train_file).absolute()),
                "freeze": freeze,
                "counting": s.counting,
                "lr_factors": dict(s.lr_factors or {}),
                "e0s": e0s if isinstance(e0s, str) or e0s is None else "given",
                "n_trainable": report.n_trainable,
                "n_frozen": report.n_frozen,
                "frozen": report.frozen_paths(),
                "wall_s": wall,
                "strategy": self.strategy.to_dict(),
                "n_adapter": report.n_adapter,
                "n_replay": len(self.replay),
                "optimiser_state_bytes": report.state_bytes,
                "train_config": self.config.train.to_dict(),
                "config": self.config.to_dict(),
            },
        }

    def frozen_unchanged(self, trained_params) -> bool:
        frozen = [l == FROZEN for l in jax.tree.leaves(self.labels)]
        before = [x for x, f in zip(jax.tree.leaves(self.tree), frozen) if f]
        after = [x for x, f in zip(jax.tree.leaves(trained_params), frozen) if f]
        return _leaves_equal(before, after)

    def write_model(self, directory: Path, variables: dict, wall: float) -> None:
        """OUT/model, written once and atomically (`save_model`): frozen leaves checked bit for
        bit against the foundation's, adapters merged into a plain jaxtl model, metadata added."""
        variables = jax.tree.map(np.asarray, variables)
        if not self.frozen_unchanged(variables["params"]):
            raise RuntimeError("a frozen parameter changed during fine-tuning; this is a bug")
        save_model(
            directory,
            self.model_config,
            {**variables, "params": self.strategy.merge(variables["params"])},
            self.metadata(wall),
        )

    def train(self, out: Path, decay_filter, resume: bool) -> tuple[TrainResult, int, float, float]:
        """(the engine's result, steps, training seconds, wall seconds)."""
        cfg = self.config.train
        predict = self.strategy.reparametrise(make_predict(MACE(self.model_config, cfg.backend)))
        if self.config.strategy.cut_frozen_gradients:
            predict = stop_frozen_gradients(predict, self.labels)
        valid, test = self.fixed_batches(self.splits.valid), self.fixed_batches(self.splits.test)
        variables = {"params": self.tree, "constants": self.constants}
        t0 = time.perf_counter()
        result = train(
            predict,
            variables,
            self.train_batches,
            valid,
            cfg,
            out,
            test_batches=test or None,
            param_labels=self.labels,
            label_transforms=lr_factor_transforms(self.labels),
            decay_filter=decay_filter,
            model_config=self.model_config.to_dict(),
            resume=resume,
            write_model=lambda d, v: self.write_model(d, v, time.perf_counter() - t0),
        )
        wall = time.perf_counter() - t0
        epochs = [r for r in result.history if "epoch" in r and "time_s" in r]
        n_steps = sum(len(self.train_batches(r["epoch"])) for r in epochs)
        return result, n_steps, sum(r.get("time_s", 0.0) for r in result.history), wall

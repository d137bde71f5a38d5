"""`finetune`: foundation model + new DFT data -> a fine-tuned model folder.

    finetune("spice_mace.model", "aspirin.xyz", "runs/aspirin_f6", freeze=6, epochs=50)

Steps: load the foundation (a jaxtl model folder, or a mace-torch `.model` converted
into OUT/foundation), check the data's elements, refit the E0s (`jaxtl.finetune.e0s`),
label the parameters (`jaxtl.finetune.freeze`) or set up a strategy's adapters and
replay set (`jaxtl.finetune.strategies`), train with `jaxtl.train.train` (frozen
leaves: no update, no optimiser state, no gradient), and write OUT/model, a model
folder like any other (`jaxtl.load_model`, MACECalculator) with any adapters merged.

    finetune("spice_mace.model", "aspirin.xyz", "runs/aspirin_lora", strategy="replay+lora",
             lora_rank=4, replay_weight=0.5, epochs=50)
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
from jaxtl.finetune.e0s import fit_e0s
from jaxtl.finetune.freeze import (
    FROZEN,
    freeze_labels,
    group_of,
    lr_factor_transforms,
    map_paths,
    path_str,
    soft_labels,
)
from jaxtl.finetune.gradients import stop_frozen_gradients
from jaxtl.finetune.replay import describe_replay, pseudolabel, replay_structures
from jaxtl.finetune.strategies import Strategy, StrategyReport, describe_strategy, make_strategy
from jaxtl.graph import Configuration, DataKeys, GraphDataset, batch_iterator, check_elements, choose_budgets
from jaxtl.heads import select_head
from jaxtl.model import MACE, MACEConfig, make_predict
from jaxtl.model_io import cast_variables, load_model_files, save_model
from jaxtl.train import TrainConfig, make_optimizer, train
from jaxtl.train.data import DataConfig, read_splits
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


def load_foundation(foundation: str | Path | LoadedModel, out_dir: Path, head: str | None = None,
                    check_conversion: bool = True, log=print) -> tuple[MACEConfig, dict, dict]:
    """(config, variables as numpy, metadata) of a model folder, a LoadedModel or a
    mace-torch `.model` file (converted into out_dir/foundation), or a released model's
    name (`jaxtl.foundations`, converted once into the cache)."""
    if isinstance(foundation, LoadedModel):
        config, variables, meta = foundation.config, jax.tree.map(np.asarray, foundation.variables), \
            dict(foundation.metadata)
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


def resolve_labels(params, config: MACEConfig, freeze: Freeze = None, counting: str = "mace",
                   lr_factors: Mapping[str, float] | None = None):
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


def strategy_base_labels(strategy: Strategy, params, config: MACEConfig, freeze: Freeze = None,
                         counting: str = "mace", lr_factors: Mapping[str, float] | None = None):
    """Labels of the foundation's weights under `strategy`: from the freezing options
    (`resolve_labels`) when given; else all trainable, or all frozen for a strategy
    with adapters (LoRA, magnitude: only the adapters train)."""
    chosen = freeze is not None or bool(lr_factors)
    if strategy.naive and chosen:
        raise ValueError("strategy naive trains every weight; drop the freezing options or use strategy freeze")
    if strategy.reparametrised and not chosen:
        return map_paths(lambda _: FROZEN, params)
    return resolve_labels(params, config, freeze, counting, lr_factors)


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


def finetune(
    foundation: str | Path | LoadedModel,
    train_file: str | Path,
    out_dir: str | Path,
    *,
    freeze: Freeze = None,
    counting: str = "mace",
    lr_factors: Mapping[str, float] | None = None,
    e0s: str | Mapping | None = None,
    epochs: int | None = None,
    batch_size: int = 5,
    lr: float | None = None,
    train_config: TrainConfig | None = None,
    valid_file: str | Path | None = None,
    valid_fraction: float = 0.1,
    test_file: str | Path | None = None,
    head: str | None = None,
    keys: DataKeys = DataKeys(),
    config_type_weights: Mapping[str, float] | None = None,
    train_fraction: float = 1.0,
    max_force: float | None = None,
    resume: bool = False,
    cut_frozen_gradients: bool = True,
    decay_filter: Callable | None = mace_decay_filter,
    check_conversion: bool = True,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
    strategy: str | Strategy = "freeze",
    lora_rank: int | None = None,
    lora_alpha: float | None = None,
    adapter_patterns: Sequence[str] | None = None,
    replay_size: int | None = None,
    replay_weight: float | None = None,
    replay_files: Sequence[str | Path] = (),
    replay_rattle: float | None = None,
) -> FinetuneResult:
    """Fine-tune a foundation MACE on `train_file` and write `out_dir/model`.

    Args:
        foundation: a jaxtl model folder, a `LoadedModel`, or a mace-torch `.model`
            file (converted into out_dir/foundation, verified unless
            `check_conversion=False`), or a released model's name such as
            "mace-mp-0-medium" (downloaded and converted once into the cache).
        train_file: structures with REF_energy/REF_forces (`keys`), any ASE format.
        out_dir: the run folder (engine outputs, out_dir/model).
        freeze: `--freeze N` (int), a label pytree or a function params -> labels.
        counting: "mace" (upstream, by name) or "paper" (the fork's child modules).
        lr_factors: soft freezing, e.g. {"interactions_lr_factor": 0.1}.
        e0s: "average", "estimated", "foundation", "isolated" or given E0s (see `fit_e0s`);
            None: the IsolatedAtom frames of `train_file` when it has them, else "average".
        epochs, lr: override `train_config`'s max_num_epochs and optimizer.lr.
        batch_size: structures per batch.
        train_config: engine settings (default `TrainConfig()`, mace-torch defaults).
        valid_file: validation structures; without it `valid_fraction` of the
            training file (seeded by train_config.seed) is held out.
        test_file: evaluated at the end (metrics in out_dir/final_metrics.json).
        head: the head of a multi-head foundation to fine-tune.
        keys: where labels live in the files; config_type_weights: mace's --config_type_weights.
        train_fraction: train on this fraction of the training pool (data-efficiency studies).
        max_force: drop structures with any force component above this (eV/A).
        resume: continue an interrupted run in `out_dir` exactly.
        cut_frozen_gradients: do not compute gradients of frozen leaves.
        decay_filter: (path, leaf) -> whether weight decay applies (mace-torch groups).
        dry_run: stop after printing the freezing report (nothing is trained).
        strategy: "naive", "freeze" (default: the freezing options above; none
            given = naive), "lora", "magnitude", "replay", "replay+lora" or any
            '+'-joined parts (see `jaxtl.finetune.strategies`), or a `Strategy`.
            With adapters the foundation's weights are frozen unless freezing
            options are given (then those rule the non-adapted weights).
        lora_rank, lora_alpha: W = W0 + (alpha/rank) A B (defaults 4 and rank).
        adapter_patterns: globs over parameter paths choosing the adapted weights.
        replay_size, replay_weight, replay_files, replay_rattle: the pseudolabelled
            replay set (`jaxtl.finetune.replay.Replay`).

    Raises:
        DataError: an element the foundation does not know (names element, file, frame),
            in the training data or the replay set.
        ValueError: an adapter pattern that matches nothing, a LoRA rank above a chosen
            weight's dimensions, an option the strategy does not use.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = train_config or TrainConfig()
    if epochs is not None:
        cfg = cfg.replace(max_num_epochs=epochs)
    if lr is not None:
        cfg = cfg.replace(optimizer=dataclasses.replace(cfg.optimizer, lr=lr))
    enable_x64_if(cfg.dtype)
    if not isinstance(strategy, Strategy):
        strategy = make_strategy(strategy, lora_rank=lora_rank, lora_alpha=lora_alpha,
                                 adapter_patterns=adapter_patterns, replay_size=replay_size,
                                 replay_weight=replay_weight, replay_files=[str(f) for f in replay_files],
                                 replay_rattle=replay_rattle, seed=cfg.seed)

    config, variables, meta = load_foundation(foundation, out, head, check_conversion, log)
    head_name = config.heads[0]
    splits = read_splits(DataConfig(
        train_file=str(train_file), valid_file=str(valid_file) if valid_file else None,
        valid_fraction=valid_fraction, test_file=str(test_file) if test_file else None, keys=keys,
        batch_size=batch_size, max_force=max_force, train_fraction=train_fraction, seed=cfg.seed,
        config_type_weights=config_type_weights))
    configs, valid, test = ([dataclasses.replace(c, head=head_name) for c in cs]
                            for cs in (splits.train, splits.valid, splits.test))
    test = test or None
    for cs in (configs, valid, test or []):
        check_elements(cs, config.atomic_numbers)

    foundation_e0s = np.asarray(variables["constants"]["atomic_energies"])
    teacher = (config, variables)  # the frozen foundation labels the replay set
    atomic_energies = fit_e0s(configs, config.atomic_numbers, foundation_e0s, e0s,
                              foundation_energies(config, variables, config.r_max, batch_size),
                              isolated=splits.isolated)
    log("E0s (eV): " + ", ".join(f"Z={z}: {e:.6f}" for z, e in zip(config.atomic_numbers, atomic_energies[0])))
    variables = {"params": variables["params"],
                 "constants": {**variables["constants"], "atomic_energies": atomic_energies}}
    variables = cast_variables(variables, cfg.dtype)
    config = config.replace(dtype=cfg.dtype)

    params = variables["params"]
    tree = strategy.init(params, seed=cfg.seed)
    labels = strategy.labels(tree, strategy_base_labels(strategy, params, config, freeze, counting, lr_factors))
    decay_filter = strategy.decay_filter(decay_filter)
    replay_set = replay_line = None
    if strategy.replay is not None:
        replay_set = replay_structures(strategy.replay, configs, config.atomic_numbers)
        replay_line = describe_replay(strategy.replay, replay_set)
    report = describe_strategy(strategy, params, tree, labels, optimizer=lambda l: make_optimizer(
        cfg.optimizer, l, lr_factor_transforms(l), decay_filter), replay=replay_line)
    log(str(report))
    if dry_run:
        return FinetuneResult(None, report, atomic_energies, labels, strategy=strategy)

    np_dtype = np.dtype(cfg.dtype)
    replay = []
    if replay_set:
        replay = pseudolabel(build_loaded_model(*teacher, dtype=cfg.dtype), replay_set, strategy.replay, head_name,
                             foundation_e0s[0], np.asarray(atomic_energies)[0], batch_size)
        log(f"labelled {len(replay)} replay structures with the foundation")
    train_configs = configs + replay
    train_set = GraphDataset(train_configs, config.r_max, heads=config.heads, progress=False)
    budgets = choose_budgets(train_set, batch_size)

    def train_batches(epoch):
        batches = batch_iterator(train_set, batch_size, budgets, shuffle=True, seed=cfg.seed, epoch=epoch,
                                 dtype=np_dtype)
        if not replay:
            return list(batches)
        # with their config types, so the training metrics show the replay error apart
        return [(b, [train_configs[i].config_type for i in members]) for (_, members), b in zip(batches.plan, batches)]

    fixed = lambda cs: list(batch_iterator(GraphDataset(cs, config.r_max, heads=config.heads, progress=False),
                                           batch_size, shuffle=False, dtype=np_dtype)) if cs else []
    predict = strategy.reparametrise(make_predict(MACE(config, cfg.backend)))
    if cut_frozen_gradients:
        predict = stop_frozen_gradients(predict, labels)

    def metadata(wall: float | None) -> dict:
        return {**meta, "finetune": {
            "train_file": str(Path(train_file).absolute()), "freeze": freeze if isinstance(freeze, int) else
            ("custom" if freeze is not None else None), "counting": counting, "lr_factors": dict(lr_factors or {}),
            "e0s": e0s if isinstance(e0s, str) or e0s is None else "given", "n_trainable": report.n_trainable,
            "n_frozen": report.n_frozen, "frozen": report.frozen_paths(), "wall_s": wall,
            "strategy": strategy.to_dict(), "n_adapter": report.n_adapter, "n_replay": len(replay),
            "optimiser_state_bytes": report.state_bytes,
            "train_config": cfg.to_dict()}}

    def write_model(directory: Path, variables: dict) -> None:
        """OUT/model, written once: frozen leaves checked bit for bit against the foundation's,
        adapters merged into a plain jaxtl model, the metadata added."""
        variables = jax.tree.map(np.asarray, variables)
        if not frozen_unchanged(variables["params"]):
            raise RuntimeError("a frozen parameter changed during fine-tuning; this is a bug")
        save_model(directory, config, {**variables, "params": strategy.merge(variables["params"])},
                   metadata(time.perf_counter() - t0))

    def frozen_unchanged(trained_params) -> bool:
        frozen_labels = [l == FROZEN for l in jax.tree.leaves(labels)]
        before = [x for x, f in zip(jax.tree.leaves(tree), frozen_labels) if f]
        after = [x for x, f in zip(jax.tree.leaves(trained_params), frozen_labels) if f]
        return _leaves_equal(before, after)

    t0 = time.perf_counter()
    result = train(predict, {**variables, "params": tree}, train_batches, fixed(valid), cfg, out,
                   test_batches=fixed(test) if test else None, param_labels=labels,
                   label_transforms=lr_factor_transforms(labels), decay_filter=decay_filter,
                   model_config=config.to_dict(), resume=resume, write_model=write_model)
    wall = time.perf_counter() - t0
    n_steps = sum(len(train_batches(r["epoch"])) for r in result.history if "epoch" in r and "time_s" in r)
    train_time = sum(r.get("time_s", 0.0) for r in result.history)

    model_dir = out / "model"
    log(report.summary())
    log(f"wrote {model_dir} ({n_steps} steps in {train_time:.1f} s)")
    # frozen_unchanged: write_model compared every frozen leaf before writing and raises otherwise
    return FinetuneResult(model_dir, report, atomic_energies, labels, result, True, wall,
                          n_steps / train_time if train_time > 0 else None, strategy, len(replay))

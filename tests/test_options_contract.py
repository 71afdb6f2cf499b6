"""Every option honoured or refused, over every registered algorithm (issue 18).

For each algorithm of ``ALGORITHMS`` and each shared ``[train]`` option (``--lr``, ``--epochs``, ``--batch-size``,
...), in each way it can be given (``--option``, ``--set train.option=``, a config file, an ablation axis), either
the value reaches the resolved config field that configures it, or the command is refused with one line naming the
option and the algorithm. And the catalog's claim of which ``[train]`` fields an algorithm reads is checked against
the algorithm itself: built on tiny data with a recording ``[train]`` section, it reads every field it claims
(with the value set there: in its stages and optimisers) and none of the fields whose setting is refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from recrl_cli.algorithms import catalog
from recrl_cli.algorithms.registry import ALGORITHMS
from recrl_cli.cli.common import parse_extra_options
from recrl_cli.cli.resolve import run_config_from_cli
from recrl_cli.config.loading import replace_in
from recrl_cli.config.schema import RunConfig, TrainConfig
from recrl_cli.errors import ConfigError

# A non-default value for every [train] field (what an option sets, and what the built algorithm must show).
VALUES: dict[str, Any] = {"epochs": 3, "max_steps": 7, "batch_size": 96, "eval_batch_size": 1234, "lr": 0.0123,
                          "weight_decay": 0.0042, "patience": 5, "monitor": "mean/logloss", "calibration_guard": False, "shuffle": False,
                          "checkpoint_every": 17, "seed": 99, "device": "cpu", "threads": 1}  # fmt: skip
# The Stage attribute each loop field configures.
STAGE_ATTR = {"epochs": "max_epochs", "max_steps": "max_steps", "batch_size": "batch_size", "shuffle": "shuffle",
              "patience": "patience", "monitor": "monitor"}  # fmt: skip


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_the_catalog_and_the_registry_list_the_same_algorithms():
    assert list(ALGORITHMS) == list(catalog.ENTRIES)
    for name, spec in ALGORITHMS.items():
        assert spec.family == catalog.entry(name).family and spec.summary == catalog.entry(name).summary
    assert set(VALUES) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(catalog.TRAINER_WIDE + catalog.LOOP_FIELDS) == set(VALUES)
    for family in catalog.FAMILIES.values():  # a refused field always says what to set instead
        assert set(family.instead) == set(catalog.LOOP_FIELDS) - set(family.reads), family.name


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_every_train_option_reaches_its_field_or_is_refused(algo):
    model_fields = {f.name for f in dataclasses.fields(ALGORITHMS[algo].config_cls)}
    for name, value in VALUES.items():
        option = f"--{name.replace('_', '-')}"
        try:
            cfg = run_config_from_cli(algo, config=None, sets=None, extra=[(name, _text(value))])
        except ConfigError as exc:
            assert name not in model_fields and not catalog.reads_train_field(algo, name), (algo, name)
            assert option in str(exc) and algo in str(exc) and "\n" not in str(exc), str(exc)
            continue
        if name in model_fields:  # the algorithm's own quantity of that name (an agent's batch size)
            assert getattr(cfg.model, name) == value, (algo, name)
        else:
            assert catalog.reads_train_field(algo, name), f"{algo} accepted {option} but does not read it"
            assert getattr(cfg.train, name) == value, (algo, name)


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_set_file_and_ablation_axes_follow_the_same_rule(algo, tmp_path):
    base = run_config_from_cli(algo, config=None, sets=None)
    for name, value in VALUES.items():
        reads = catalog.reads_train_field(algo, name)
        toml = tmp_path / f"{name}.toml"
        toml.write_text(f"[train]\n{name} = {value!r}\n".replace("False", "false").replace("'", '"'))
        ways = {
            f"--set train.{name}": (run_config_from_cli, (algo,), {"config": None, "sets": [f"train.{name}={_text(value)}"]}),
            f"train.{name} in {toml}": (run_config_from_cli, (algo,), {"config": toml, "sets": None}),
            f"--{name.replace('_', '-')}": (replace_in, (base, {f"train.{name}": value}), {}),  # an ablation axis
        }  # fmt: skip
        for given_as, (fn, args, kwargs) in ways.items():

            def resolve(fn=fn, args=args, kwargs=kwargs) -> RunConfig:
                return fn(*args, **kwargs)

            if reads:
                assert getattr(resolve().train, name) == value, (algo, given_as)
                continue
            with pytest.raises(ConfigError) as info:
                resolve()
            assert str(info.value).startswith(f"{algo} does not use {given_as}"), str(info.value)


def test_the_issue_examples_are_refused_or_honoured_through_the_cli(cli):
    """The reported cases, as a user types them: one line, exit 1, naming the option, the algorithm and the fix."""
    refused = {
        ("unifiedrl", "--lr", "0.5"): "--actor-lr and --critic-lr",
        ("unifiedrl", "--epochs", "9"): "--iterations",
        ("rmtl", "--epochs", "2"): "--pretrain-epochs, --critic-epochs and --polish-epochs",
        ("hac", "--lr", "0.1"): "--actor-lr and --critic-lr",
        ("hrlrec", "--epochs", "2"): "--offline-epochs",
        ("mtf-td3bc", "--set", "train.batch_size=8"): "--batch-size (model.batch_size)",
    }
    for (algo, *args), fix in refused.items():
        res = cli("train", algo, *args, "--dry-run")
        assert res.exit_code == 1, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {algo} does not use {args[0]}"), res.output
        assert fix in lines[0], res.output
    honoured = {("unifiedrl", "--actor-lr", "0.002"): "model.actor_lr", ("mtf-iql", "--critic-lr", "0.003"): "model.critic_lr",
                ("unifiedrl", "--batch-size", "32"): "model.batch_size", ("mmoe", "--batch-size", "32"): "train.batch_size",
                ("rmtl", "--lr", "0.002"): "train.lr", ("rmtl", "--pretrain-epochs", "2"): "model.pretrain_epochs"}  # fmt: skip
    for (algo, option, value), key in honoured.items():
        res = cli("train", algo, option, value, "--dry-run")
        assert res.exit_code == 0, res.output
        assert any(line.split("│")[1:3] == [f" {key} ", f" {value} "] or (key in line and value in line)
                   for line in res.output.splitlines()), res.output  # fmt: skip


def test_the_fusion_learners_use_the_learning_rates_given():
    from recrl_cli.mtf.algorithm import learner_overrides
    from recrl_cli.mtf.config import MTFRunConfig

    for learner in ("unifiedrl", "ddpg", "td3bc", "iql", "bcq", "cql_sac"):
        assert {"actor_lr", "critic_lr"}.isdisjoint(
            learner_overrides(learner, MTFRunConfig())
        )  # their defaults
        got = learner_overrides(learner, MTFRunConfig(actor_lr=0.002, critic_lr=0.003))
        assert got["actor_lr"] == 0.002 and got["critic_lr"] == 0.003, learner
    with pytest.raises(ConfigError, match=r"model\.actor_lr must be positive"):
        MTFRunConfig(actor_lr=0.0)


# ---- the catalog's claims against the built algorithms ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RecordingTrain(TrainConfig):
    """A [train] section that records which of its fields are read once ``recording`` is on."""

    reads: ClassVar[set[str]] = set()
    recording: ClassVar[bool] = False

    def __getattribute__(self, name: str) -> Any:
        if type(self).recording and name in VALUES:
            type(self).reads.add(name)
        return object.__getattribute__(self, name)


SIM = ["--user-latent", 4, "--item-latent", 4, "--enc-dim", 8, "--n-layers", 1, "--n-heads", 2, "--ff-dim", 8,
       "--state-hidden", 8, "--history-length", 12]  # fmt: skip
MTL = ["--embed-dim", 4, "--bottom-dims", 8, "--tower-dims", 4, "--expert-num", 2]
AGENT = ["--batch-users", 4, "--slate-size", 2, "--warmup-steps", 2, "--iterations", 2, "--eval-steps", 2,
         "--latent", 4, "--enc-dim", 4, "--n-heads", 2, "--ff-dim", 8, "--n-layers", 1, "--action-hidden", 8,
         "--critic-hidden", 8, "--inverse-hidden", 8, "--batch-size", 4, "--buffer-size", 64]  # fmt: skip
FUSION = ["--batch-users", 8, "--slate-size", 3, "--retrieved", 10, "--random-candidates", 5, "--cem-population", 4,
          "--cem-iterations", 2, "--cem-steps", 2, "--collect-steps", 4, "--iterations", 4, "--batch-size", 8,
          "--hidden", 8, "--critics", 2, "--eval-waves", 1, "--test-steps", 2]  # fmt: skip
HRLREC = ["--batch-users", 4, "--warmup-steps", 2, "--iterations", 2, "--eval-days", 1, "--day-steps", 2, "--latent", 4,
          "--enc-dim", 8, "--n-heads", 2, "--ff-dim", 8, "--action-dim", 8, "--hidden", 8, "--batch-size", 8,
          "--buffer-size", 64, "--mode", "offline+online"]  # fmt: skip
TINY = {"mtl base": MTL, "rl-mtl": [*MTL, "--critic-embed-dim", 4, "--critic-bottom-dims", 8, "--critic-tower-dims", 4],
        "simulator": SIM, "rl": AGENT, "mtf": FUSION, "rl-list": HRLREC}  # fmt: skip


@pytest.fixture(scope="module")
def kuairand(tmp_path_factory) -> tuple[Path, Path]:
    """(prepared tiny KuaiRand, run directory of a tiny simulator trained on it)."""
    from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand
    from recrl_cli.data.synth.kuairand import write_kuairand
    from recrl_cli.pipeline import train_run
    from recrl_cli.tracking.base import NullTracker

    root = tmp_path_factory.mktemp("contract_kr")
    write_kuairand(root / "raw", num_users=40, num_items=60, num_impressions=1_500, seed=7)
    prepare_kuairand(root / "raw", root / "prepared", KuaiRandPrepareParams())
    extra = parse_extra_options([str(a) for a in [*SIM, "--epochs", 1, "--max-steps", 2, "--batch-size", 64]])
    cfg = run_config_from_cli("simulator", config=None, sets=None, extra=extra, device="cpu",
                              data_dir=root / "prepared")  # fmt: skip
    result = train_run(cfg, NullTracker(), experiment="sim", runs_root=root / "runs")
    return root / "prepared", result.run_dir


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_the_algorithm_reads_exactly_the_train_fields_it_claims(algo, cli_dataset, kuairand, tmp_path):
    from recrl_cli.pipeline import load_data

    family = catalog.family_of(algo)
    args = list(TINY[family.name])
    if family.dataset == "kuairand":
        prepared = kuairand[0]
        if family.name != "simulator":
            args += ["--simulator", kuairand[1]]
        if family.name == "mtf":
            args += ["--logs-dir", tmp_path / "logs"]
    else:
        prepared = cli_dataset.prepared
    cfg = run_config_from_cli(algo, config=None, sets=None, extra=parse_extra_options([str(a) for a in args]),
                              device="cpu", data_dir=prepared)  # fmt: skip
    claimed = set(catalog.honoured_train_fields(algo))
    train = RecordingTrain(**{n: VALUES[n] if n in claimed else getattr(cfg.train, n) for n in VALUES})
    cfg = RunConfig(algo=algo, data=cfg.data, train=train, model=cfg.model)
    device = torch.device("cpu")
    data = load_data(Path(cfg.data.prepared_dir), device, algo)
    RecordingTrain.reads.clear()
    RecordingTrain.recording = True
    try:
        algorithm = ALGORITHMS[algo].build(cfg, data, device)
        stages = algorithm.stages()
        if family.has_val:
            algorithm.evaluate("val")
    finally:
        RecordingTrain.recording = False
    loop_reads = RecordingTrain.reads & set(catalog.LOOP_FIELDS)
    assert loop_reads <= set(family.reads), f"{algo} reads {loop_reads - set(family.reads)}, which it refuses"
    assert set(family.reads) <= loop_reads, (
        f"{algo} claims {set(family.reads) - loop_reads} but never reads them"
    )
    for name in family.reads:  # the value set is the one in force
        if name == "batch_size":  # may be converted (the simulator steps over user sequences of H rows)
            bigger = ALGORITHMS[algo].build(
                dataclasses.replace(cfg, train=dataclasses.replace(train, batch_size=8 * VALUES[name])),
                data,
                device,
            )
            before, after = [s.batch_size for s in stages], [s.batch_size for s in bigger.stages()]
            assert after != before and all(a >= b for a, b in zip(after, before, strict=True)), (algo, name)
        elif name in STAGE_ATTR:
            assert any(getattr(s, STAGE_ATTR[name]) == VALUES[name] for s in stages), (algo, name)
        if name in ("lr", "weight_decay"):
            optimisers = [v for v in vars(algorithm).values() if isinstance(v, torch.optim.Optimizer)]
            groups = [g for o in optimisers for g in o.param_groups]
            assert any(g[name] == VALUES[name] for g in groups), (algo, name)

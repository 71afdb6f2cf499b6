"""What each registered algorithm is and which shared settings it reads: the registry's light half.

Standard library only, so that ``--help``, ``recrl algos`` and one-line option errors never import torch. The
heavy half (config class, builder, predictor loader) is :data:`recrl_cli.algorithms.registry.ALGORITHMS`, which
takes every entry's family and summary from here (one list of names, one place for each fact).

A family's :class:`Family` says which ``[train]`` fields its algorithms read. The trainer-wide ones
(:data:`TRAINER_WIDE`) are read by the one training loop for every algorithm; the others only where the
family's stages use them. Setting a ``[train]`` field an algorithm does not read (``--epochs`` for an RL agent,
``train.lr`` for a fusion learner) is refused with a one-line error that names the option, the algorithm and
what configures that quantity instead (:func:`refusal`): an option is honoured or refused, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: ``[train]`` fields every algorithm reads: the training loop's seed, device, threads and checkpoints.
TRAINER_WIDE = ("seed", "device", "threads", "checkpoint_every")
#: The other ``[train]`` fields: the supervised loop's epochs, batches, optimiser and early stopping.
LOOP_FIELDS = ("epochs", "max_steps", "batch_size", "eval_batch_size", "lr", "weight_decay", "patience",
               "monitor", "calibration_guard", "shuffle")  # fmt: skip


@dataclass(frozen=True)
class Family:
    """Capabilities shared by the algorithms of one family.

    Attributes:
        name: as shown by ``recrl algos`` ("mtl base", "rl", ...).
        dataset: the prepared dataset its algorithms read by default (the manifest's ``dataset``).
        also_reads: other prepared datasets they accept (the MTL bases and RMTL: KuaiRand, as feature rows).
        reads: the :data:`LOOP_FIELDS` its stages read (the trainer-wide fields are always read).
        instead: for a loop field it does not read, what configures that quantity instead (the refusal's hint).
        data_parallel: whether ``--nproc N`` can train it.
        has_val: whether it reports validation metrics (early stopping on a validation split).
        headline: the test metric a study charts for it, per variant with 95 % CIs (``recrl ablate``).
    """

    name: str
    dataset: str
    reads: tuple[str, ...]
    instead: dict[str, str] = field(default_factory=dict)
    data_parallel: bool = False
    has_val: bool = True
    also_reads: tuple[str, ...] = ()
    headline: str = "test/mean/auc"

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every prepared dataset its algorithms train on, the default first."""
        return (self.dataset, *self.also_reads)


_RL_INSTEAD = {
    "epochs": "--iterations (env steps)",
    "max_steps": "--iterations (env steps)",
    "lr": "--actor-lr and --critic-lr",
    "weight_decay": "--actor-decay and --critic-decay",
    "batch_size": "--batch-size (model.batch_size)",
    "eval_batch_size": "--eval-steps",
    "patience": "nothing: agents train for --iterations without early stopping",
    "monitor": "nothing: agents train for --iterations without early stopping",
    "calibration_guard": "nothing: agents train for --iterations without early stopping",
    "shuffle": "nothing: transitions are sampled from the replay buffer",
}

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("mtl base", "retailrocket", LOOP_FIELDS, data_parallel=True, also_reads=("kuairand",)),
        Family(
            "rl-mtl",
            "retailrocket",
            tuple(n for n in LOOP_FIELDS if n != "epochs"),
            instead={"epochs": "--pretrain-epochs, --critic-epochs and --polish-epochs (one per stage)"},
            data_parallel=True,
            also_reads=("kuairand",),
        ),
        Family(
            "simulator",
            "kuairand",
            tuple(n for n in LOOP_FIELDS if n != "calibration_guard"),
            instead={"calibration_guard": "nothing: the simulator early-stops on --monitor alone"},
        ),
        Family("rl", "kuairand", (), instead=_RL_INSTEAD, has_val=False, headline="test/agent/total_reward"),
        Family(
            "mtf",
            "kuairand",
            (),
            instead={
                **_RL_INSTEAD,
                "epochs": "--iterations (learner steps) and --cem-iterations",
                "max_steps": "--iterations (learner steps)",
                "weight_decay": "nothing: the offline learners use plain Adam",
                "eval_batch_size": "--eval-waves and --test-steps",
                "patience": "nothing: the learners train for --iterations without early stopping",
                "monitor": "nothing: the learners train for --iterations without early stopping",
                "calibration_guard": "nothing: the learners train for --iterations without early stopping",
                "shuffle": "nothing: transitions are sampled from the logs",
            },
            has_val=False,
            headline="test/policy/reward",
        ),
        Family(
            "rl-list",
            "kuairand",
            (),
            instead={
                **_RL_INSTEAD,
                "epochs": "--offline-epochs (logged lists) and --iterations (env steps)",
                "weight_decay": "nothing: HRL-Rec uses plain Adam with --grad-clip",
                "eval_batch_size": "--eval-days and --day-steps",
            },
            has_val=False,
            headline="test/agent/ctr",
        ),
    )
}


@dataclass(frozen=True)
class Entry:
    """One registered algorithm's light facts."""

    name: str
    family: str
    summary: str


_MTL = "mtl base"
ENTRIES: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("singletask", _MTL, "One independent network per task (no sharing)."),
        Entry("sharedbottom", _MTL, "Shared bottom MLP, one tower per task."),
        Entry("omoe", _MTL, "Mixture of experts with one gate shared by all tasks."),
        Entry("mmoe", _MTL, "Multi-gate mixture of experts (one gate per task)."),
        Entry("ple", _MTL, "Progressive layered extraction: shared + task-specific experts per level."),
        Entry("esmm", _MTL, "Entire-space model: pCTCVR = pCTR x pCVR (exactly 2 tasks)."),
        Entry("aitm", _MTL, "Adaptive information transfer between sequential tasks."),
        Entry("rmtl", "rl-mtl",
              "RMTL: pretrain a base, fit per-task TD critics on sessions, polish with 1 - lambda*Q."),
        Entry("simulator", "simulator", "KuaiSim user response model (7 behaviours) for the whole-session env."),
        Entry("hac", "rl", "HAC agent (hyper-actor critic) in the simulator's whole-session env."),
        Entry("ddpg", "rl", "DDPG baseline on the hyper-action, in the simulator's whole-session env."),
        Entry("td3", "rl", "TD3 baseline (clipped double Q, delayed actor) in the simulator's env."),
        Entry("a2c", "rl", "A2C baseline (Gaussian hyper-action policy) in the simulator's env."),
        Entry("unifiedrl", "mtf",
              "UnifiedRL multi-task fusion: bounded exploration logs, q x m critics, PTM rounds."),
        Entry("mtf-es", "mtf", "Fusion baseline: ES/CEM-tuned personalised fusion weights (the behaviour policy)."),
        Entry("mtf-ddpg", "mtf", "Fusion baseline: offline DDPG on Gaussian-noise logs (D1)."),
        Entry("mtf-td3bc", "mtf", "Fusion baseline: TD3+BC on Gaussian-noise logs (D1)."),
        Entry("mtf-iql", "mtf", "Fusion baseline: IQL on Gaussian-noise logs (D1)."),
        Entry("mtf-bcq", "mtf", "Fusion baseline: BCQ as BatchRL-MTF on Gaussian-noise logs (D1)."),
        Entry("mtf-cql", "mtf", "Fusion baseline: CQL+SAC on Gaussian-noise logs (D1)."),
        Entry("hrlrec", "rl-list", "HRL-Rec: channel selector + item recommender building lists in the simulator."),
    )
}  # fmt: skip


#: Where ``recrl prepare <dataset>`` writes by default (KuaiRand: ``--version pure``).
DEFAULT_PREPARED = {
    "retailrocket": "datasets/prepared/retailrocket",
    "kuairand": "datasets/prepared/kuairand-pure",
}

#: Options that name a saved model of another run, by family: a run directory, a model.pt, an MLflow run id, or
#: ``latest`` (the newest finished run of that algorithm on the same data in --runs-dir).
MODEL_REFERENCES = {"rl": ("simulator",), "mtf": ("simulator", "ranker"), "rl-list": ("simulator",)}


def data_defaults(algo: str) -> dict[str, str]:
    """The ``[data]`` defaults of ``algo``: the prepared dataset of the kind it reads, where prepare puts it."""
    dataset = family_of(algo).dataset
    return {"data.dataset": dataset, "data.prepared_dir": DEFAULT_PREPARED[dataset]}


def entry(algo: str) -> Entry:
    """The catalog entry of ``algo`` (a one-line RegistryError listing the names if unknown)."""
    try:
        return ENTRIES[algo]
    except KeyError:
        from recrl_cli.errors import RegistryError

        raise RegistryError(f"unknown algorithm '{algo}'; choose one of: {', '.join(ENTRIES)}") from None


def family_of(algo: str) -> Family:
    return FAMILIES[entry(algo).family]


def reads_train_field(algo: str, name: str) -> bool:
    """Whether ``algo`` reads ``train.<name>`` (the trainer-wide fields: always)."""
    return name in TRAINER_WIDE or name in family_of(algo).reads


def honoured_train_fields(algo: str) -> tuple[str, ...]:
    """The ``[train]`` fields ``algo`` reads, trainer-wide ones first."""
    return TRAINER_WIDE + family_of(algo).reads


def refusal(algo: str, name: str, given_as: str) -> str:
    """The one-line error for setting ``train.<name>`` (given as ``given_as``) on an algorithm that ignores it."""
    hint = family_of(algo).instead.get(name, "")
    if hint.startswith("nothing: "):
        tail = f": {hint.removeprefix('nothing: ')}"
    else:
        tail = f"; set {hint} instead" if hint else ""
    what = given_as if f"train.{name}" in given_as else f"{given_as} (train.{name})"
    return f"{algo} does not use {what}{tail}"

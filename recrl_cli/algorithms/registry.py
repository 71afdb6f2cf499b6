"""The registry: one explicit line per algorithm. No lookup by naming convention, no import-time magic."""

from __future__ import annotations

from recrl_cli.agents.algorithm import CONFIGS as _AGENT_CONFIGS
from recrl_cli.agents.algorithm import agent_builder, load_agent_predictor
from recrl_cli.algorithms.base import AlgoSpec
from recrl_cli.algorithms.rmtl import RMTLConfig, build_rmtl
from recrl_cli.algorithms.supervised import load_mtl_predictor, supervised_builder
from recrl_cli.errors import DataError, RegistryError
from recrl_cli.hrlrec.algorithm import build_hrlrec, load_hrlrec_predictor
from recrl_cli.hrlrec.config import HRLRecConfig
from recrl_cli.mtf.algorithm import load_mtf_predictor, mtf_builder
from recrl_cli.mtf.config import MTFRunConfig
from recrl_cli.nets.mtl.config import MTLConfig
from recrl_cli.sim.config import SimulatorConfig
from recrl_cli.sim.train import build_simulator, load_simulator_predictor

_MTL = "mtl base"

ALGORITHMS: dict[str, AlgoSpec] = {
    "singletask": AlgoSpec("singletask", MTLConfig, supervised_builder("singletask"), load_mtl_predictor,
                           "One independent network per task (no sharing).", _MTL),
    "sharedbottom": AlgoSpec("sharedbottom", MTLConfig, supervised_builder("sharedbottom"), load_mtl_predictor,
                             "Shared bottom MLP, one tower per task.", _MTL),
    "omoe": AlgoSpec("omoe", MTLConfig, supervised_builder("omoe"), load_mtl_predictor,
                     "Mixture of experts with one gate shared by all tasks.", _MTL),
    "mmoe": AlgoSpec("mmoe", MTLConfig, supervised_builder("mmoe"), load_mtl_predictor,
                     "Multi-gate mixture of experts (one gate per task).", _MTL),
    "ple": AlgoSpec("ple", MTLConfig, supervised_builder("ple"), load_mtl_predictor,
                    "Progressive layered extraction: shared + task-specific experts per level.", _MTL),
    "esmm": AlgoSpec("esmm", MTLConfig, supervised_builder("esmm"), load_mtl_predictor,
                     "Entire-space model: pCTCVR = pCTR x pCVR (exactly 2 tasks).", _MTL),
    "aitm": AlgoSpec("aitm", MTLConfig, supervised_builder("aitm"), load_mtl_predictor,
                     "Adaptive information transfer between sequential tasks.", _MTL),
    "rmtl": AlgoSpec("rmtl", RMTLConfig, build_rmtl, load_mtl_predictor,
                     "RMTL: pretrain a base, fit per-task TD critics on sessions, polish with 1 - lambda*Q.", "rl-mtl"),
    "simulator": AlgoSpec("simulator", SimulatorConfig, build_simulator, load_simulator_predictor,
                          "KuaiSim user response model (7 behaviours) for the whole-session env.", "simulator"),
    "hac": AlgoSpec("hac", _AGENT_CONFIGS["hac"], agent_builder("hac"), load_agent_predictor,
                    "HAC agent (hyper-actor critic) in the simulator's whole-session env.", "rl"),
    "ddpg": AlgoSpec("ddpg", _AGENT_CONFIGS["ddpg"], agent_builder("ddpg"), load_agent_predictor,
                     "DDPG baseline on the hyper-action, in the simulator's whole-session env.", "rl"),
    "td3": AlgoSpec("td3", _AGENT_CONFIGS["td3"], agent_builder("td3"), load_agent_predictor,
                    "TD3 baseline (clipped double Q, delayed actor) in the simulator's env.", "rl"),
    "a2c": AlgoSpec("a2c", _AGENT_CONFIGS["a2c"], agent_builder("a2c"), load_agent_predictor,
                    "A2C baseline (Gaussian hyper-action policy) in the simulator's env.", "rl"),
    "unifiedrl": AlgoSpec("unifiedrl", MTFRunConfig, mtf_builder("unifiedrl"), load_mtf_predictor,
                          "UnifiedRL multi-task fusion: bounded exploration logs, q x m critics, PTM rounds.", "mtf"),
    "mtf-es": AlgoSpec("mtf-es", MTFRunConfig, mtf_builder("mtf-es"), load_mtf_predictor,
                       "Fusion baseline: ES/CEM-tuned personalised fusion weights (the behaviour policy).", "mtf"),
    "mtf-ddpg": AlgoSpec("mtf-ddpg", MTFRunConfig, mtf_builder("mtf-ddpg"), load_mtf_predictor,
                         "Fusion baseline: offline DDPG on Gaussian-noise logs (D1).", "mtf"),
    "mtf-td3bc": AlgoSpec("mtf-td3bc", MTFRunConfig, mtf_builder("mtf-td3bc"), load_mtf_predictor,
                          "Fusion baseline: TD3+BC on Gaussian-noise logs (D1).", "mtf"),
    "mtf-iql": AlgoSpec("mtf-iql", MTFRunConfig, mtf_builder("mtf-iql"), load_mtf_predictor,
                        "Fusion baseline: IQL on Gaussian-noise logs (D1).", "mtf"),
    "mtf-bcq": AlgoSpec("mtf-bcq", MTFRunConfig, mtf_builder("mtf-bcq"), load_mtf_predictor,
                        "Fusion baseline: BCQ as BatchRL-MTF on Gaussian-noise logs (D1).", "mtf"),
    "mtf-cql": AlgoSpec("mtf-cql", MTFRunConfig, mtf_builder("mtf-cql"), load_mtf_predictor,
                        "Fusion baseline: CQL+SAC on Gaussian-noise logs (D1).", "mtf"),

    "hrlrec": AlgoSpec("hrlrec", HRLRecConfig, build_hrlrec, load_hrlrec_predictor,
                       "HRL-Rec: channel selector + item recommender building lists in the simulator.", "rl-list"),
}  # fmt: skip


# The prepared dataset each family reads (the manifest's "dataset"): RetailRocket's feature rows for the MTL bases and
# RMTL, KuaiRand's logs and feature tables for the simulator and everything that acts in it.
DATASET_OF_FAMILY = {"mtl base": "retailrocket", "rl-mtl": "retailrocket", "simulator": "kuairand",
                     "rl": "kuairand", "rl-list": "kuairand", "mtf": "kuairand"}  # fmt: skip


def required_dataset(algo: str) -> str:
    """``retailrocket`` or ``kuairand``: what ``algo`` trains on (and what its saved model scores)."""
    return DATASET_OF_FAMILY[get_algorithm(algo).family]


_DATASET_NAMES = {"retailrocket": "RetailRocket", "kuairand": "KuaiRand"}


def check_dataset(algo: str, dataset: object, directory: object, doing: str = "trains on") -> None:
    """One-line DataError unless ``dataset`` (a manifest's ``dataset``) is what ``algo`` needs."""
    need = required_dataset(algo)
    if dataset != need:
        held = (
            f"prepared {_DATASET_NAMES.get(dataset, dataset)} data"
            if isinstance(dataset, str) and dataset
            else "data whose manifest names no dataset"
        )
        raise DataError(
            f"{algo} {doing} prepared {_DATASET_NAMES[need]} data (`recrl prepare {need}`), but {directory} "
            f"holds {held}"
        )


def get_algorithm(name: str) -> AlgoSpec:
    """Look a name up, with a one-line error listing the valid names."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise RegistryError(f"unknown algorithm '{name}'; choose one of: {', '.join(ALGORITHMS)}") from None

"""The registry: each algorithm's config class, builder and predictor loader, by name.

The names, families and summaries are :mod:`recrl_cli.algorithms.catalog`'s (light, read by ``--help``); this
module adds the parts that need torch. No lookup by naming convention, no import-time magic.
"""

from __future__ import annotations

from recrl_cli.agents.algorithm import CONFIGS as _AGENT_CONFIGS
from recrl_cli.agents.algorithm import agent_builder, load_agent_predictor
from recrl_cli.algorithms import catalog
from recrl_cli.algorithms.base import AlgoSpec
from recrl_cli.algorithms.rmtl import RMTLConfig, build_rmtl
from recrl_cli.algorithms.supervised import load_mtl_predictor, supervised_builder
from recrl_cli.errors import DataError
from recrl_cli.hrlrec.algorithm import build_hrlrec, load_hrlrec_predictor
from recrl_cli.hrlrec.config import HRLRecConfig
from recrl_cli.mtf.algorithm import load_mtf_predictor, mtf_builder
from recrl_cli.mtf.config import MTFRunConfig
from recrl_cli.nets.mtl.config import MTLConfig
from recrl_cli.sim.config import SimulatorConfig
from recrl_cli.sim.train import build_simulator, load_simulator_predictor


def _spec(name: str, config_cls: type, build, load_predictor) -> AlgoSpec:
    """A registry row: the heavy parts given here, the name's family and summary from the catalog."""
    e = catalog.entry(name)
    return AlgoSpec(name, config_cls, build, load_predictor, e.summary, e.family)


_HEAVY = {
    **{base: (MTLConfig, supervised_builder(base), load_mtl_predictor)
       for base in ("singletask", "sharedbottom", "omoe", "mmoe", "ple", "esmm", "aitm")},
    "rmtl": (RMTLConfig, build_rmtl, load_mtl_predictor),
    "simulator": (SimulatorConfig, build_simulator, load_simulator_predictor),
    **{agent: (_AGENT_CONFIGS[agent], agent_builder(agent), load_agent_predictor)
       for agent in ("hac", "ddpg", "td3", "a2c")},
    **{fusion: (MTFRunConfig, mtf_builder(fusion), load_mtf_predictor)
       for fusion in ("unifiedrl", "mtf-es", "mtf-ddpg", "mtf-td3bc", "mtf-iql", "mtf-bcq", "mtf-cql")},
    "hrlrec": (HRLRecConfig, build_hrlrec, load_hrlrec_predictor),
}  # fmt: skip

#: name -> spec, in the catalog's order (``recrl algos`` lists them so); a name in only one of the two is a bug.
ALGORITHMS: dict[str, AlgoSpec] = {name: _spec(name, *_HEAVY[name]) for name in catalog.ENTRIES}


# The prepared dataset each family reads (the manifest's "dataset"): RetailRocket's feature rows for the MTL bases and
# RMTL, KuaiRand's logs and feature tables for the simulator and everything that acts in it.
DATASET_OF_FAMILY = {name: family.dataset for name, family in catalog.FAMILIES.items()}


def required_dataset(algo: str) -> str:
    """``retailrocket`` or ``kuairand``: what ``algo`` trains on (and what its saved model scores)."""
    return DATASET_OF_FAMILY[get_algorithm(algo).family]


_DATASET_NAMES = {"retailrocket": "RetailRocket", "kuairand": "KuaiRand"}


def check_dataset(algo: str, dataset: object, directory: object, doing: str = "trains on") -> None:
    """One-line DataError unless ``dataset`` (a manifest's ``dataset``) is one ``algo`` reads (the MTL bases and
    RMTL: RetailRocket or KuaiRand; the simulator and what acts in it: KuaiRand)."""
    accepted = catalog.FAMILIES[get_algorithm(algo).family].datasets
    if dataset in accepted:
        return
    held = (
        f"prepared {_DATASET_NAMES.get(dataset, dataset)} data"
        if isinstance(dataset, str) and dataset
        else "data whose manifest names no dataset"
    )
    wanted = " or ".join(f"{_DATASET_NAMES[d]} data (`recrl prepare {d}`)" for d in accepted)
    raise DataError(f"{algo} {doing} prepared {wanted}, but {directory} holds {held}")


def get_algorithm(name: str) -> AlgoSpec:
    """Look a name up, with a one-line error listing the valid names."""
    catalog.entry(name)  # the one-line error for an unknown name
    return ALGORITHMS[name]

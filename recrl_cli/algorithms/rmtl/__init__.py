"""RMTL: RL-weighted multi-task losses (pretrain → TD critics → critic-weighted polish); see ``algorithm.py``."""

from recrl_cli.algorithms.rmtl.algorithm import RMTL, build_rmtl
from recrl_cli.algorithms.rmtl.config import RMTLConfig
from recrl_cli.algorithms.rmtl.transfer import resolve_critics_source

__all__ = ["RMTL", "RMTLConfig", "build_rmtl", "resolve_critics_source"]

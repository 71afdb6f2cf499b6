"""recrl_cli.evaluation: pure metric functions (``metrics``: AUC, logloss, s-logloss, GAUC, MTF-GAUC) and
study statistics over seeds (``stats``: t confidence intervals, paired t-tests).

Import the submodules directly (``from recrl_cli.evaluation.metrics import auc``); this package file stays
empty so that other engineers can add metric modules (NCIS, depth, ILD, ...) without touching it.
"""

"""Offline RL learners for multi-task fusion: UnifiedRL and its baselines (DDPG, TD3+BC, IQL, BCQ, CQL+SAC),
trained on logged transitions (:mod:`recrl_cli.offline.batch`) through one small contract
(:class:`recrl_cli.offline.base.OfflineLearner`), listed in :data:`recrl_cli.offline.registry.LEARNERS`."""

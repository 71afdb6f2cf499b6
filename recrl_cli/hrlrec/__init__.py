"""HRL-Rec (Xie et al., AAAI 2021): hierarchical channel selector + item recommender for integrated feeds.

Modules: channels (channel grouping, per-channel candidate lists), rewards, networks, losses, agent, metrics,
online (simulated lists, baselines), logged (logged lists), config, algorithm (``recrl train hrlrec``).
"""

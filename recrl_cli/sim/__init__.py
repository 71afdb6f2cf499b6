"""KuaiSim-style simulation: the user response model, its training, and the whole-session environment.

Modules: :mod:`~recrl_cli.sim.config` (configs and the faithful switches, documented in one table),
:mod:`~recrl_cli.sim.encoders` and :mod:`~recrl_cli.sim.response_model` (the URM),
:mod:`~recrl_cli.sim.data` (prepared KuaiRand on the device), :mod:`~recrl_cli.sim.train` (``recrl train
simulator``), :mod:`~recrl_cli.sim.environment` (the batched env), :mod:`~recrl_cli.sim.metrics`,
:mod:`~recrl_cli.sim.policies` (random / popular / oracle references), :mod:`~recrl_cli.sim.rollout` (the one
loop that steps an env with a policy), :mod:`~recrl_cli.sim.evaluate` (a policy beside the references on the same
users) and :mod:`~recrl_cli.sim.synthetic` (random Pure-shaped tables for tests and benchmarks). Nothing is imported here, so importing a submodule
stays cheap.
"""

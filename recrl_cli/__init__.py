"""recrl: reinforcement-learning multi-task recommendation experiments from the command line."""

__version__ = "0.1.0"

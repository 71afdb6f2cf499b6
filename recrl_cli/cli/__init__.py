"""recrl_cli.cli."""

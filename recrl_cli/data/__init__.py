"""recrl_cli.data."""

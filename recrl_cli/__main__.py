"""Allow ``python -m recrl_cli`` (the same entry point as the ``recrl`` console script)."""

from recrl_cli.cli.app import main

if __name__ == "__main__":
    main()

"""Allow ``python -m recrl_cli``."""

from recrl_cli.cli.app import main

if __name__ == "__main__":
    main()

"""Typed, frozen run configuration: sections, defaults with help, TOML files and ``--set`` overrides."""

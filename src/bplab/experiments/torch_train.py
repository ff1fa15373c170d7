"""Placeholder: the owner of this module replaces it."""


def register(subparsers) -> None:
    """Add this module's subcommands (none yet)."""

"""The one exception type that the CLI turns into a single error line."""


class BplabError(Exception):
    """A user-facing error: bad input, a missing file, an unknown name.

    The message must name the thing that is wrong and say what to do next; the CLI prints it
    as one line and exits with status 2, without a traceback.
    """


def unknown_name_error(kind: str, name: str, known) -> BplabError:
    """Build the error for a name that is not in a registry, listing the valid names."""
    return BplabError(f"unknown {kind} {name!r}; valid choices: {', '.join(sorted(known))}")

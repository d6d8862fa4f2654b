"""User-facing errors: the CLI prints these as one line, never as a traceback."""


class FairrayError(Exception):
    """A mistake in user input (config, path, dataset) with a message that says how to fix it."""

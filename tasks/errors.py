"""The one error type a user can act on: the CLI prints it as one `error: ...` line, exit code 2."""


class UserError(ValueError):
    """Bad input: a spec key, a column, a file or an address. Its message names it and what is allowed."""

"""The errors a user can act on: the CLI prints them as one `error: ...` line, exit code 2."""
from cluster.settings import SettingsError


class UserError(ValueError):
    """Bad input: a spec key, a column, a file or an address. Its message names it and what is allowed."""


# cluster/ raises its own type (it imports nothing of tasks); both are the user's to fix
USER_ERRORS = (UserError, SettingsError)

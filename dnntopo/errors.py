"""The one exception type for mistakes a user can fix: the CLI prints its message as one line."""


class UserError(Exception):
    """An error caused by input (a file, a flag); its message names it and says what to do."""

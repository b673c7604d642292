"""The one exception type for user mistakes.

Anything a user can get wrong (a missing file, a corrupt image, a bad checkpoint, a prompt
that does not fit) raises `R1VError` with one sentence that says what and how to fix it.
The CLI prints that sentence and exits with status 2; it never shows a traceback for one.
"""


class R1VError(Exception):
    """A user-facing error: its message is shown as is, on one line."""

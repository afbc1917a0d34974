"""User-facing errors.

Anything a user can cause (bad file, bad option, missing data) raises AccelsimError with a
message of one line that names the file or option and the problem. The CLI prints it as
`error: <message>` and exits with code 2; it never shows a traceback for these.
"""


class AccelsimError(Exception):
    """A problem with the user's input, reported as one line and exit code 2."""

    exit_code = 2

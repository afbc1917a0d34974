"""User-facing errors.

Anything a user can cause (bad file, bad option, missing data) raises AccelsimError with a
message of one line that names the file or option and the problem. The CLI prints it as
`error: <message>` and exits with code 2; it never shows a traceback for these.
"""


class AccelsimError(Exception):
    """A problem with the user's input, reported as one line and exit code 2."""

    exit_code = 2


def read_user_text(path, label: str, what: str, hint: str = "", encoding: str = "utf-8") -> str:
    """The text of a file the user named, or one line: '<label>: <what> not found' or
    '<label>: cannot read <what>: <reason>'."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise AccelsimError(f"{label}: {what} not found{hint}")
    try:
        return path.read_text(encoding=encoding)
    except (OSError, UnicodeDecodeError) as exc:
        raise AccelsimError(f"{label}: cannot read {what}: {exc}") from None

"""The one exception that means "the user gave us something we cannot use"."""
from __future__ import annotations


class SkipexpError(Exception):
    """Bad input: a config value, a CLI argument or a data file.

    The CLI turns it into one line, ``error: <file>: <key>: <what is wrong>``, and exit code 2.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.key = key

    def with_file(self, file: str) -> SkipexpError:
        """The same error, located in ``file`` unless it already names one."""
        return self if self.file else SkipexpError(self.message, file=file, key=self.key)

    def __str__(self) -> str:
        return ": ".join(str(p) for p in (self.file, self.key, self.message) if p)

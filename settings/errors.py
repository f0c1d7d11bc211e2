"""The exception root of the settings package."""

from __future__ import annotations


class SettingsError(ValueError):
    """A setting that is missing, malformed or inconsistent.

    ``path`` is where it is: a key path in a file (``target.pdns.dns``,
    ``secondary#2.address``) or a command-line option (``--listen``); ``reason`` says what is
    wrong and what to do; ``source`` is the file, when there is one. A ValueError too, so a
    value check can be caught as one.
    """

    def __init__(self, path: str, reason: str, source: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.source = source
        super().__init__(self._text())

    def _text(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.path}: {self.reason}" if self.path else f"{where}{self.reason}"

    def __str__(self) -> str:
        return self._text()

    def located(self, source: str) -> SettingsError:
        """This error, said of ``source`` (a file) when it names none yet."""
        if self.source is None:
            self.source = source
            self.args = (self._text(),)
        return self

"""How long work (reading a zone file, signing a whole zone) reports how far it is: a
callback given ``(done, total)``, total None when unknown. The CLI draws it; nothing here
prints."""

from collections.abc import Callable

Progress = Callable[[int, int | None], None]

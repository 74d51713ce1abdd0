"""Masking a run's secret values in its log before the log is stored.

Responsibility: which values of a run's environment are secret, and replacing them in
the text of pod log lines.

Design notes:

- Which values: those of the environment variables whose *name* matches
  ``ZWMD_SECRET_NAME_PATTERN``, a regular expression searched anywhere in the name,
  ignoring case (default :data:`~zwmd.settings.envvalues.DEFAULT_SECRET_NAME_PATTERN`: ``TOKEN``, ``SECRET``,
  ``PASSWORD``, ``PASSWD``, ``KEY``, ``CREDENTIAL``, so ``ZENML_STORE_API_TOKEN`` is
  one). Values shorter than :data:`MIN_SECRET_CHARS` characters are not masked: a
  one-letter or ``"1"`` value would turn every line into asterisks and hides nothing.
  Leading and trailing whitespace of a value is not part of it. A value of several
  lines (a PEM key) is masked line by line, since the log is framed into lines. Besides
  each value as it is, its JSON-escaped form is masked (a runner that logs JSON lines
  escapes quotes, backslashes, newlines and non-ASCII characters).
- Where: at framing (:class:`~zwmd.logs.records.KubeletLineParser`), the one place pod
  bytes become lines before anything stores, summarises or serves them. A value split
  across two reads of the stream is whole again once its line is framed, so it is masked
  like any other. So neither the store, nor the failure summary (built from stored
  lines), nor any output format ever sees it.
- A line longer than :data:`~zwmd.logs.records.MAX_LINE_BYTES` is stored in pieces; a
  value the cut falls into is masked on both sides of the cut: the end of a piece that
  continues loses whatever could begin a value, the start of a continuation whatever
  could end one (a little more may be masked there, never less).
- Every occurrence becomes :data:`MASK` (``***``), longest values first, so a value
  that contains another is masked whole.
- What is not masked: other encodings of a value (base64, URL-encoded, split by the
  runner itself into separate lines), and values of variables whose names the pattern
  does not match.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = [
    "MASK",
    "MIN_SECRET_CHARS",
    "Masker",
    "secret_values",
]

#: What a masked value is replaced with.
MASK: Final = "***"
#: Values shorter than this are not masked.
MIN_SECRET_CHARS: Final = 4


def secret_values(environment: Mapping[str, str], names: re.Pattern[str]) -> list[str]:
    """The values to mask: of variables whose name matches, long enough, de-duplicated."""
    found: set[str] = set()
    for name, value in environment.items():
        if not names.search(name):
            continue
        for text in (value, json.dumps(value.strip())[1:-1]):
            for line in text.splitlines():
                line = line.strip()
                if len(line) >= MIN_SECRET_CHARS:
                    found.add(line)
    return sorted(found, key=lambda v: (-len(v), v))


class Masker:
    """Replaces the given secret values in text (see the module's notes)."""

    __slots__ = ("_pattern", "_values")

    def __init__(self, values: Iterable[str]) -> None:
        self._values = sorted({v for v in values if v}, key=lambda v: (-len(v), v))
        if not self._values:
            raise ValueError("values: a Masker needs at least one value")
        self._pattern = re.compile("|".join(map(re.escape, self._values)))

    @classmethod
    def for_environment(
        cls, environment: Mapping[str, str], names: re.Pattern[str]
    ) -> Masker | None:
        """The masker of a run's environment, or None when nothing in it is secret."""
        values = secret_values(environment, names)
        return cls(values) if values else None

    def found_in(self, text: str) -> bool:
        """Whether any value occurs in ``text`` (plain substring searches: much faster
        than the alternation for the few values a run has)."""
        return any(value in text for value in self._values)

    def mask_lines(self, lines: list[tuple[int, str]]) -> None:
        """Mask every value in the texts of ``(ts_ns, text)`` lines, in place."""
        values, sub = self._values, self._pattern.sub
        for i, (ts, text) in enumerate(lines):
            for value in values:
                if value in text:
                    lines[i] = (ts, sub(MASK, text))
                    break

    def __call__(self, text: str, *, continued: bool = False, continues: bool = False) -> str:
        """``text`` with every value masked.

        :param continued: ``text`` continues a piece cut off before it: mask a head
            that could end a value.
        :param continues: ``text`` is cut and continues in the next piece: mask a tail
            that could begin a value.
        """
        if self.found_in(text):
            text = self._pattern.sub(MASK, text)
        if continued:
            cut = max((n for v in self._values for n in _overlaps(v, text, head=True)), default=0)
            if cut:
                text = MASK + text[cut:]
        if continues:
            cut = max((n for v in self._values for n in _overlaps(v, text, head=False)), default=0)
            if cut:
                text = text[: len(text) - cut] + MASK
        return text


def _overlaps(value: str, text: str, *, head: bool) -> Iterable[int]:
    """Lengths ``n`` such that ``text`` starts with the last ``n`` characters of
    ``value`` (``head``), or ends with its first ``n`` (not ``head``); ``n < len(value)``."""
    for n in range(min(len(value) - 1, len(text)), 0, -1):
        if text.startswith(value[-n:]) if head else text.endswith(value[:n]):
            yield n
            return

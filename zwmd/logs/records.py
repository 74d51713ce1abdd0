"""Log records and their framing: bytes from a pod in, bounded text records out.

Responsibility: the value type every log store holds (:class:`LogRecord`), turning raw
bytes into lines without ever losing or rejecting input, parsing kubelet's timestamp
prefix, and the two output shapes ZenML understands.

Design notes:

- Timestamps are integer nanoseconds since the epoch (UTC). Kubelet stamps lines with
  RFC 3339 nanoseconds; a ``datetime`` keeps only microseconds, so the integer is the
  field and :attr:`LogRecord.timestamp` is derived from it.
- Framing never drops a byte. Invalid UTF-8 is decoded with U+FFFD replacements. A line
  longer than ``max_line_bytes`` is cut into several pieces; cuts are made at a UTF-8
  character boundary when one is within reach, and are a function of the line's bytes
  only (not of how the bytes arrived), so a replayed line is cut the same way. That
  matters for de-duplication, which counts pieces.
- ZenML reads ``get_logs`` output line by line: a line that starts with ``{`` and ends
  with ``}`` is a ``LogEntry`` JSON object (``message``, integer ``level``,
  ``timestamp``, ``name``); anything else is plain text at INFO, timestamped only with a
  ``[YYYY-MM-DD HH:MM:SS UTC] `` prefix. :func:`to_zenml` and :func:`to_text` produce
  exactly those two shapes, one line each (messages never contain a newline: framing
  splits on it, and :func:`to_text` escapes any that a caller put in).
- The text form is for terminals: it shows control characters instead of sending them
  (:func:`escape_controls`: ``\\x1b``, ``\\x00``, ``\\r``, ``\\n``, ``\\u202e``, ...; tab
  stays), so a runner cannot move the cursor, recolour or rewrite what a reader sees.
  :func:`to_raw` gives each stored message as it is, for pipes.
- zwmd's own notes (the failure summary, build notes) are records of source ``zwmd``
  whose first line starts with :data:`NOTE_PREFIX` (``zwmd: ``) and whose further lines
  (details, quoted container lines) start with :data:`NOTE_QUOTE` (``zwmd| ``). In the
  text form a runner or builder line that starts with ``zwmd`` (any case, after
  whitespace) is shown with its source in front (``(runner) zwmd: ...``), so it cannot
  pass for one of them. The zenml form says the source in ``name``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeAlias

import orjson

from zwmd.logs.masking import Masker

__all__ = [
    "MAX_LINE_BYTES",
    "NOTE_PREFIX",
    "NOTE_QUOTE",
    "SOURCES",
    "SOURCE_BUILDER",
    "SOURCE_RUNNER",
    "SOURCE_ZWMD",
    "KubeletLineParser",
    "LineSplitter",
    "LogRecord",
    "Piece",
    "clean_text",
    "escape_controls",
    "format_rfc3339",
    "level_from_name",
    "parse_kubelet_line",
    "parse_rfc3339_ns",
    "runner_level_and_message",
    "split_lines",
    "to_raw",
    "to_text",
    "to_zenml",
]

SOURCE_ZWMD: Final = "zwmd"
SOURCE_BUILDER: Final = "builder"
SOURCE_RUNNER: Final = "runner"
#: Every source, in the order used to break ties between equal timestamps.
SOURCES: Final[tuple[str, ...]] = (SOURCE_ZWMD, SOURCE_BUILDER, SOURCE_RUNNER)
#: How the first line of a note zwmd writes itself starts, and each further line.
NOTE_PREFIX: Final = "zwmd: "
NOTE_QUOTE: Final = "zwmd| "

#: Longest piece of one line stored as one record (bytes of UTF-8). Kubernetes' own
#: container runtimes split at 16 KiB; 64 KiB keeps most lines whole while a record
#: stays small enough to stream.
MAX_LINE_BYTES: Final = 64 * 1024
_MIN_LINE_BYTES: Final = 64

_NS: Final = 1_000_000_000


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One line (or one piece of a long line) of a workload's log stream.

    :param ts_ns: UTC time in nanoseconds since the epoch.
    :param source: ``"zwmd"``, ``"builder"`` or ``"runner"``.
    :param level: a Python ``logging`` level (``20`` is INFO).
    :param message: the text, without a trailing newline.
    :param attempt: which run of the workload id it belongs to.
    """

    ts_ns: int
    source: str
    level: int
    message: str
    attempt: int

    @property
    def timestamp(self) -> datetime:
        """The time as an aware UTC ``datetime`` (microsecond precision)."""
        return datetime.fromtimestamp(self.ts_ns // 1000 / 1_000_000, tz=UTC)

    @classmethod
    def at(cls, when: datetime, source: str, level: int, message: str, attempt: int) -> LogRecord:
        """Build a record from an aware ``datetime`` (naive ones are taken as UTC)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delta = when - datetime(1970, 1, 1, tzinfo=UTC)
        ts_ns = (delta.days * 86_400 + delta.seconds) * _NS + delta.microseconds * 1000
        return cls(ts_ns, source, level, message, attempt)


# -- levels -------------------------------------------------------------------------

_LEVELS: Final[dict[str, int]] = {
    "NOTSET": logging.NOTSET,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
}


def level_from_name(name: str | int) -> int:
    """Return the ``logging`` level for a name such as ``"INFO"`` (any case) or a number.

    :raises ValueError: naming the ``level`` field and the accepted names.
    """
    if isinstance(name, int) and not isinstance(name, bool):
        if 0 <= name <= 100:
            return name
    elif isinstance(name, str):
        key = name.strip().upper()
        if key in _LEVELS:
            return _LEVELS[key]
        if key.isdigit() and int(key) <= 100:
            return int(key)
    accepted = ", ".join(n for n in _LEVELS if n not in {"WARN", "FATAL"})
    raise ValueError(f"level: unknown log level {name!r}; expected one of {accepted}")


# -- text hygiene -------------------------------------------------------------------


def clean_text(text: str) -> str:
    """Return ``text`` with lone surrogates replaced, so that it encodes as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


# -- framing ------------------------------------------------------------------------


#: A bounded piece of a line: ``(text, continued)``, ``continued`` when it is not the
#: line's first piece.
Piece: TypeAlias = tuple[str, bool]


def _cut(data: bytes | bytearray, start: int, limit: int) -> int:
    """Where to end a piece that starts at ``start`` so no UTF-8 character is split."""
    end = start + limit
    # Step back over at most three continuation bytes to the start of a character.
    for back in range(4):
        if data[end - back] & 0xC0 != 0x80:
            return end - back
    return end


def _decode(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", "replace")


class LineSplitter:
    """Incremental framing of a byte stream into bounded lines.

    ``feed`` bytes as they arrive and get back the complete pieces; ``flush`` at the end
    of the stream returns the unterminated rest. A line of ``n`` bytes gives
    ``ceil(n / max_line_bytes)`` pieces (a little more where a cut steps back to a
    character boundary); an empty line gives one empty piece.
    """

    __slots__ = ("_buf", "_continued", "_max")

    def __init__(self, *, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        if max_line_bytes < _MIN_LINE_BYTES:
            raise ValueError(f"max_line_bytes: must be at least {_MIN_LINE_BYTES}")
        self._max = max_line_bytes
        self._buf = bytearray()
        self._continued = False

    def _pieces_of(self, line: bytearray | bytes, out: list[Piece], *, final: bool) -> int:
        """Emit the pieces of ``line`` that are complete; return where the rest starts."""
        limit = self._max
        start = 0
        while len(line) - start > limit:
            cut = _cut(line, start, limit)
            out.append((_decode(line[start:cut]), self._continued))
            self._continued = True
            start = cut
        if final:
            out.append((_decode(line[start:]), self._continued))
            self._continued = False
            return len(line)
        return start

    def feed(self, data: bytes) -> list[Piece]:
        """Add bytes; return every piece that is complete."""
        out: list[Piece] = []
        if not data:
            return out
        nl = data.rfind(b"\n")
        if nl < 0:
            self._buf += data
            del self._buf[: self._pieces_of(self._buf, out, final=False)]
            return out
        lines = data[:nl].split(b"\n")
        if self._buf:
            self._buf += lines[0]
            lines[0] = bytes(self._buf)
            self._buf.clear()
        limit = self._max
        if not self._continued and max(map(len, lines)) <= limit:  # the usual case
            out = [(line.decode("utf-8", "replace"), False) for line in lines]
        else:
            for line in lines:
                if len(line) <= limit:
                    out.append((line.decode("utf-8", "replace"), self._continued))
                    self._continued = False
                else:
                    self._pieces_of(line, out, final=True)
        self._buf += data[nl + 1 :]
        if len(self._buf) > limit:
            del self._buf[: self._pieces_of(self._buf, out, final=False)]
        return out

    @property
    def cut_pending(self) -> bool:
        """Whether the last piece returned was cut off, its line continuing."""
        return self._continued

    def flush(self) -> list[Piece]:
        """Return the rest of an unterminated last line (nothing if there is none)."""
        out: list[Piece] = []
        if self._buf or self._continued:
            self._pieces_of(self._buf, out, final=True)
            self._buf.clear()
        return out


def split_lines(data: bytes, *, max_line_bytes: int = MAX_LINE_BYTES) -> list[str]:
    """Split a whole buffer into bounded lines (see :class:`LineSplitter`).

    ``b"a\\nb"`` and ``b"a\\nb\\n"`` both give ``["a", "b"]``; nothing raises, whatever
    the bytes.
    """
    splitter = LineSplitter(max_line_bytes=max_line_bytes)
    pieces = splitter.feed(data)
    pieces.extend(splitter.flush())
    return [text for text, _ in pieces]


# -- kubelet timestamps -------------------------------------------------------------

_epoch_cache: dict[str, int] = {}


def parse_rfc3339_ns(text: str) -> int:
    """Parse an RFC 3339 time (``2026-11-22T03:04:05.123456789Z``) to UTC nanoseconds.

    Fractions of 0-9 digits and ``Z`` or ``±HH:MM`` offsets are accepted.

    :raises ValueError: when ``text`` is not such a time.
    """
    if len(text) < 20 or text[10] not in "Tt" or text[4] != "-" or text[13] != ":":
        raise ValueError(f"timestamp: not an RFC 3339 time: {text[:40]!r}")
    head = text[:19]
    secs = _epoch_cache.get(head)
    if secs is None:
        try:
            moment = datetime(
                int(head[0:4]), int(head[5:7]), int(head[8:10]),
                int(head[11:13]), int(head[14:16]), int(head[17:19]), tzinfo=UTC,
            )  # fmt: skip
        except ValueError as exc:
            raise ValueError(f"timestamp: not an RFC 3339 time: {text[:40]!r}") from exc
        secs = int(moment.timestamp())
        if len(_epoch_cache) > 4096:
            _epoch_cache.clear()
        _epoch_cache[head] = secs
    if len(text) == 30 and text[29] == "Z" and text[19] == "." and text[20:29].isdigit():
        return secs * _NS + int(text[20:29])  # kubelet's usual shape: fast path
    i = 19
    frac = 0
    if text[i] == ".":
        j = i + 1
        while j < len(text) and text[j].isdigit():
            j += 1
        digits = text[i + 1 : j]
        if not digits:
            raise ValueError(f"timestamp: not an RFC 3339 time: {text[:40]!r}")
        frac = int(digits[:9].ljust(9, "0"))
        i = j
    zone = text[i:]
    if zone in ("Z", "z"):
        offset = 0
    elif len(zone) == 6 and zone[0] in "+-" and zone[3] == ":":
        try:
            offset = (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60) * (1 if zone[0] == "+" else -1)
        except ValueError as exc:
            raise ValueError(f"timestamp: bad offset in {text[:40]!r}") from exc
    else:
        raise ValueError(f"timestamp: not an RFC 3339 time: {text[:40]!r}")
    return (secs - offset) * _NS + frac


def format_rfc3339(ts_ns: int) -> str:
    """Format UTC nanoseconds as kubelet does: ``2026-11-22T03:04:05.123456789Z``."""
    secs, frac = divmod(ts_ns, _NS)
    base = datetime.fromtimestamp(secs, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


def parse_kubelet_line(line: str) -> tuple[int, str] | None:
    """Split ``"<RFC 3339 time> <message>"`` into ``(ts_ns, message)``; None if unstamped."""
    space = line.find(" ")
    stamp = line if space < 0 else line[:space]
    try:
        ts = parse_rfc3339_ns(stamp)
    except (ValueError, IndexError):
        return None
    return ts, ("" if space < 0 else line[space + 1 :])


class KubeletLineParser:
    """Frame a pod log stream fetched with ``timestamps=true`` into ``(ts_ns, text)``.

    The pieces of a long line share its timestamp. A line without a parsable stamp
    (which kubelet does not send) keeps all its text and takes the previous line's time,
    or ``start_ts_ns`` before any. With a ``masker``, the run's secret values are masked
    in each line's text (see :mod:`zwmd.logs.masking`).
    """

    __slots__ = ("_last", "_masker", "_splitter")

    def __init__(
        self,
        *,
        start_ts_ns: int = 0,
        max_line_bytes: int = MAX_LINE_BYTES,
        masker: Masker | None = None,
    ) -> None:
        self._splitter = LineSplitter(max_line_bytes=max_line_bytes)
        self._last = start_ts_ns
        self._masker = masker

    def _parse(self, pieces: list[Piece]) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        cache = _epoch_cache
        for text, continued in pieces:
            if not continued:
                # Fast path for kubelet's usual "2026-11-22T03:04:05.123456789Z " prefix.
                if len(text) > 30 and text[30] == " " and text[29] == "Z" and text[19] == ".":
                    secs = cache.get(text[:19])
                    frac = text[20:29]
                    if secs is not None and frac.isdigit():
                        self._last = secs * _NS + int(frac)
                        out.append((self._last, text[31:]))
                        continue
                parsed = parse_kubelet_line(text)
                if parsed is not None:
                    self._last, text = parsed
            out.append((self._last, text))
        if self._masker is not None:
            self._mask(self._masker, pieces, out)
        return out

    def _mask(self, masker: Masker, pieces: list[Piece], out: list[tuple[int, str]]) -> None:
        """Mask secret values in ``out`` (the parsed ``pieces``), across cuts too."""
        cut = self._splitter.cut_pending or any(continued for _, continued in pieces)
        if not cut:  # the usual case: one search for the whole chunk, then only hits
            if masker.found_in("\n".join(text for _, text in out)):
                masker.mask_lines(out)
            return
        last = len(out) - 1
        for i, (ts, text) in enumerate(out):
            continues = pieces[i + 1][1] if i < last else self._splitter.cut_pending
            out[i] = (ts, masker(text, continued=pieces[i][1], continues=continues))

    def feed(self, data: bytes) -> list[tuple[int, str]]:
        """Add bytes; return the complete lines (and pieces of long lines)."""
        return self._parse(self._splitter.feed(data))

    def flush(self) -> list[tuple[int, str]]:
        """Return what is left of an unterminated last line."""
        return self._parse(self._splitter.flush())


def runner_level_and_message(text: str) -> tuple[int, str]:
    """The level a runner line carries, and its message; INFO and the text otherwise.

    A line that is itself a ZenML ``LogEntry`` JSON object (``{"message": ..., "level":
    ...}``) keeps its level and message; every other line is INFO, unchanged.
    """
    if text.startswith("{") and text.endswith("}") and '"level"' in text:
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return logging.INFO, text
        if isinstance(obj, dict) and isinstance(obj.get("message"), str):
            try:
                return level_from_name(obj.get("level", logging.INFO)), obj["message"]
            except ValueError:
                return logging.INFO, text
    return logging.INFO, text


# -- output shapes ------------------------------------------------------------------


def _iso(ts_ns: int) -> str:
    secs, frac = divmod(ts_ns, _NS)
    base = datetime.fromtimestamp(secs, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac // 1000:06d}+00:00"


def to_zenml(record: LogRecord) -> str:
    """One ZenML ``LogEntry`` JSON object: message, integer level, ISO time, source name."""
    obj = {
        "message": record.message,
        "level": record.level,
        "timestamp": _iso(record.ts_ns),
        "name": record.source,
    }
    try:
        return orjson.dumps(obj).decode("utf-8")
    except orjson.JSONEncodeError:
        obj["message"] = clean_text(record.message)
        return orjson.dumps(obj).decode("utf-8")


def to_text(record: LogRecord) -> str:
    """``[YYYY-MM-DD HH:MM:SS UTC] message``: the plain-text form ZenML timestamps.

    Control characters are escaped; a line of a pod that looks like a zwmd note is
    shown with its source in front (see the module's notes).
    """
    stamp = datetime.fromtimestamp(record.ts_ns // _NS, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    message = escape_controls(record.message)
    if record.source != SOURCE_ZWMD and message.lstrip()[:4].lower() == "zwmd":
        message = f"({record.source}) {message}"
    return f"[{stamp} UTC] {message}"


def to_raw(record: LogRecord) -> str:
    """The stored message as it is: what the container wrote (secret values masked)."""
    return record.message


# C0 controls but tab, DEL, C1 controls, and the characters that hide or reorder text
# (zero-width, line/paragraph separators, bidirectional overrides and isolates, BOM).
_CONTROLS: Final = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_NAMED: Final = {"\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with control and invisible formatting characters written as escapes.

    ESC becomes ``\\x1b``, NUL ``\\x00``, CR ``\\r``, LF ``\\n``, U+202E ``\\u202e``;
    tab and everything printable stay as they are.
    """
    return _CONTROLS.sub(_escape, text)

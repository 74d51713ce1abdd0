"""Framing and output shapes: what reaches the store, and what ZenML makes of it."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import orjson
import pytest

from zwmd.logs.merging import note_records
from zwmd.logs.records import (
    KubeletLineParser,
    LineSplitter,
    LogRecord,
    format_rfc3339,
    level_from_name,
    parse_kubelet_line,
    parse_rfc3339_ns,
    runner_level_and_message,
    split_lines,
    to_raw,
    to_text,
    to_zenml,
)

TS = parse_rfc3339_ns("2026-11-22T03:04:05.123456789Z")


def zenml_parse(line: str) -> dict[str, object]:
    """ZenML's rule: a line that starts with { and ends with } is a LogEntry JSON object."""
    assert line.startswith("{")
    assert line.endswith("}")
    obj = orjson.loads(line)
    assert isinstance(obj, dict)
    return obj


def test_split_lines_keeps_every_line() -> None:
    assert split_lines(b"a\nb\n") == ["a", "b"]
    assert split_lines(b"a\n\nb") == ["a", "", "b"]
    assert split_lines(b"") == []


def test_invalid_utf8_is_replaced_not_raised() -> None:
    lines = split_lines(b"ok \xff\xfe bytes\n\xc3(\n")
    assert lines == ["ok \ufffd\ufffd bytes", "\ufffd("]


def test_five_mib_line_is_split_into_pieces_holding_all_its_content() -> None:
    line = ("0123456789abcdé" * 400_000).encode()  # 6.4 MB, multi-byte characters
    pieces = split_lines(line + b"\n", max_line_bytes=256 * 1024)
    assert len(pieces) > 20
    assert all(len(p.encode()) <= 256 * 1024 for p in pieces)
    assert "".join(pieces).encode() == line  # no character split, nothing lost


def test_splitting_does_not_depend_on_how_bytes_arrive() -> None:
    data = ("x" * 1000 + "\n" + "é" * 3000 + "\nend").encode()
    whole = split_lines(data, max_line_bytes=700)
    splitter = LineSplitter(max_line_bytes=700)
    trickled = []
    for i in range(0, len(data), 97):
        trickled += [text for text, _ in splitter.feed(data[i : i + 97])]
    trickled += [text for text, _ in splitter.flush()]
    assert trickled == whole


def test_kubelet_lines_are_parsed_with_nanoseconds() -> None:
    assert parse_kubelet_line("2026-11-22T03:04:05.123456789Z hello world") == (
        TS,
        "hello world",
    )
    assert format_rfc3339(TS) == "2026-11-22T03:04:05.123456789Z"
    assert parse_rfc3339_ns("2026-11-22T03:04:05Z") == TS - 123456789
    assert parse_rfc3339_ns("2026-11-22T04:04:05.5+01:00") == TS - 123456789 + 500_000_000
    assert parse_kubelet_line("no stamp here") is None


def test_kubelet_parser_gives_pieces_of_a_long_line_its_timestamp() -> None:
    parser = KubeletLineParser(max_line_bytes=1024)
    body = "y" * 5000
    lines = parser.feed(f"{format_rfc3339(TS)} {body}\n".encode())
    lines += parser.feed(f"{format_rfc3339(TS + 1)} short".encode()) + parser.flush()
    assert {ts for ts, _ in lines[:-1]} == {TS}
    assert "".join(text for _, text in lines[:-1]) == body
    assert lines[-1] == (TS + 1, "short")


def test_zenml_format_is_a_log_entry_per_line() -> None:
    record = LogRecord(TS, "runner", logging.WARNING, 'say "hi"\tplease', attempt=1)
    entry = zenml_parse(to_zenml(record))
    assert entry == {
        "message": 'say "hi"\tplease',
        "level": 30,
        "timestamp": "2026-11-22T03:04:05.123456+00:00",
        "name": "runner",
    }
    assert datetime.fromisoformat(str(entry["timestamp"])) == record.timestamp
    assert record.timestamp == datetime(2026, 11, 22, 3, 4, 5, 123456, tzinfo=UTC)


def test_zenml_format_survives_lone_surrogates() -> None:
    entry = zenml_parse(to_zenml(LogRecord(TS, "zwmd", 20, "bad \ud800 text", 1)))
    assert str(entry["message"]).startswith("bad ")


def test_text_format_carries_zenml_timestamp_prefix() -> None:
    line = to_text(LogRecord(TS, "runner", 20, "{json-looking}", 1))
    assert line == "[2026-11-22 03:04:05 UTC] {json-looking}"
    assert re.match(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\] ", line)
    assert "\n" not in to_text(LogRecord(TS, "zwmd", 20, "two\nlines", 1))


def test_text_format_escapes_control_characters_visibly_and_raw_keeps_them() -> None:
    written = "\x1b[31mred\x1b[0m\x00\x07bell\ttab\r\u202eevil\u200b\x9bcsi"
    record = LogRecord(TS, "runner", 20, written, 1)
    message = to_text(record).removeprefix("[2026-11-22 03:04:05 UTC] ")
    assert message == "\\x1b[31mred\\x1b[0m\\x00\\x07bell\ttab\\r\\u202eevil\\u200b\\x9bcsi"
    assert all(char == "\t" or char.isprintable() for char in message)
    assert to_raw(record) == written
    assert orjson.loads(to_zenml(record))["message"] == written  # JSON escapes them itself


def test_a_runner_line_that_imitates_a_zwmd_note_is_shown_with_its_source() -> None:
    forged = "zwmd: the run failed (OOMKilled): out of memory"
    real = note_records(forged, level=40, ts_ns=TS, attempt=1)
    assert to_text(real[0]).endswith("] zwmd: the run failed (OOMKilled): out of memory")
    for imitation in (forged, "  ZWMD: the run failed", "zwmd| quoted", "\x1bzwmd: x"):
        shown = to_text(LogRecord(TS, "runner", 20, imitation, 1))
        assert shown.startswith("[2026-11-22 03:04:05 UTC] ")
        assert not shown[26:].startswith("zwmd"), shown
    shown = to_text(LogRecord(TS, "builder", 20, forged, 1))
    assert shown == f"[2026-11-22 03:04:05 UTC] (builder) {forged}"


def test_a_note_quotes_every_further_line_so_none_passes_for_a_note() -> None:
    text = "zwmd: the run failed (Error): bye\nLast lines:\nzwmd: the run failed (OOMKilled): x"
    records = note_records(text, level=40, ts_ns=TS, attempt=1)
    assert [r.message for r in records] == [
        "zwmd: the run failed (Error): bye",
        "zwmd| Last lines:",
        "zwmd| zwmd: the run failed (OOMKilled): x",
    ]
    assert {r.source for r in records} == {"zwmd"}
    untagged = note_records("The image was built.", level=20, ts_ns=TS, attempt=1)
    assert untagged[0].message == "zwmd: The image was built."


def test_level_names() -> None:
    assert level_from_name("INFO") == logging.INFO
    assert level_from_name("warning") == logging.WARNING
    assert level_from_name("WARN") == logging.WARNING
    assert level_from_name(40) == logging.ERROR
    with pytest.raises(ValueError, match=r"^level: unknown log level 'LOUD'"):
        level_from_name("LOUD")


def test_runner_lines_are_info_unless_they_carry_a_level() -> None:
    assert runner_level_and_message("plain text") == (logging.INFO, "plain text")
    assert runner_level_and_message('{"message": "boom", "level": 40}') == (40, "boom")
    assert runner_level_and_message('{"message": "w", "level": "WARNING"}') == (30, "w")
    assert runner_level_and_message("{not json, level}")[0] == logging.INFO

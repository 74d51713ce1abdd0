"""Which values are secret, and how framing masks them: whole, split across reads, cut.

The framing is the real one (:class:`~zwmd.logs.records.KubeletLineParser`, as the log
follower uses it), fed the bytes of a kubelet log stream in the pieces a test chooses.
"""

from __future__ import annotations

import json
import re

import pytest

from zwmd.logs.masking import MASK, Masker, secret_values
from zwmd.logs.records import KubeletLineParser
from zwmd.settings.envvalues import DEFAULT_SECRET_NAME_PATTERN, compile_name_pattern

NAMES = compile_name_pattern(DEFAULT_SECRET_NAME_PATTERN)
TOKEN = "tok-3f9a1c77e2b84d05"
STAMP = b"2026-11-22T03:04:05.123456789Z "


def masker(environment: dict[str, str]) -> Masker:
    found = Masker.for_environment(environment, NAMES)
    assert found is not None
    return found


def frame(chunks: list[bytes], mask: Masker, *, max_line_bytes: int = 1024) -> list[str]:
    parser = KubeletLineParser(masker=mask, max_line_bytes=max_line_bytes)
    lines = [text for chunk in chunks for _, text in parser.feed(chunk)]
    return lines + [text for _, text in parser.flush()]


@pytest.mark.parametrize(
    "name",
    ["ZENML_STORE_API_TOKEN", "db_password", "AWS_SECRET_ACCESS_KEY", "GcpCredentials", "apikey"],
)
def test_names_that_look_secret_are_masked_whatever_their_case(name: str) -> None:
    assert secret_values({name: TOKEN}, NAMES) == [TOKEN]


def test_other_names_and_short_values_are_not() -> None:
    environment = {"ZENML_STORE_URL": "https://zenml.example", "SHORT_TOKEN": "abc"}
    assert secret_values(environment, NAMES) == []
    assert Masker.for_environment(environment, NAMES) is None


def test_a_value_is_masked_as_it_is_and_json_escaped() -> None:
    value = 'pa"ss\\wörd'
    mask = masker({"DB_PASSWORD": value})
    logged = json.dumps({"message": f"login {value}"})
    assert mask(f"raw {value} and {logged}") == f'raw {MASK} and {{"message": "login {MASK}"}}'


def test_a_value_containing_another_is_masked_whole() -> None:
    mask = masker({"A_TOKEN": "abcd", "B_TOKEN": "abcdefgh"})
    assert mask("abcdefgh abcd") == f"{MASK} {MASK}"


def test_a_value_split_across_two_reads_is_masked_once_framed() -> None:
    mask = masker({"API_TOKEN": TOKEN})
    line = STAMP + b"token=" + TOKEN.encode() + b" end\n"
    for at in range(len(STAMP) + 1, len(line) - 1):
        assert frame([line[:at], line[at:]], mask) == [f"token={MASK} end"], at


def test_a_value_cut_with_an_over_long_line_is_masked_on_both_sides() -> None:
    mask = masker({"API_TOKEN": TOKEN})
    limit = 64
    for before in range(limit - len(STAMP) - len(TOKEN) + 1, limit - len(STAMP)):
        line = STAMP + b"x" * before + TOKEN.encode() + b" tail\n"
        pieces = frame([line[:50], line[50:]], mask, max_line_bytes=limit)
        joined = "".join(pieces)
        assert len(pieces) == 2, before
        for start in range(len(TOKEN) - 1):
            assert TOKEN[start : start + 2] not in joined.replace("x", ""), (before, pieces)
        assert pieces[0].startswith("x" * before)
        assert pieces[1].endswith(" tail")


def test_an_empty_alternative_in_the_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="empty name"):
        compile_name_pattern("TOKEN|")
    with pytest.raises(ValueError, match="not a regular expression"):
        compile_name_pattern("TOKEN(")
    assert compile_name_pattern(".").search("ANYTHING")
    assert isinstance(compile_name_pattern("^AWS_"), re.Pattern)


def test_a_value_of_several_lines_is_masked_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQEFAASCBKcwggSjAgEAAoIB\n-----END KEY-----\n"
    mask = masker({"SSH_PRIVATE_KEY": key})
    chunks = [STAMP + line.encode() + b"\n" for line in key.splitlines()]
    assert frame(chunks, mask) == [MASK] * 4
    # JSON keeps it on one line: masked whole (the trailing newline is not part of it)
    assert frame([STAMP + json.dumps(key).encode() + b"\n"], mask) == [f'"{MASK}\\n"']

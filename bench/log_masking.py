"""What masking a run's secret values costs the framing of pod logs.

Frames the same kubelet-style log (``<RFC 3339 time> <text>\\n``, ~90-byte lines, fed in
64 KiB chunks as a pod log stream arrives) with
:class:`~zwmd.logs.records.KubeletLineParser`, without a masker and with the masker of
an environment holding a ZenML API token and an AWS secret key. ``--hits`` is the share
of lines that print one of the values. Prints lines/s for each, the median of
``--runs`` runs.

    python bench/log_masking.py [--lines 200000] [--runs 5] [--hits 0.0]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

from zwmd.logs.masking import Masker
from zwmd.logs.records import KubeletLineParser
from zwmd.settings.envvalues import DEFAULT_SECRET_NAME_PATTERN, compile_name_pattern

CHUNK = 64 * 1024


def log_bytes(lines: int, hits: float, token: str) -> bytes:
    every = int(1 / hits) if hits > 0 else 0
    out = []
    for i in range(lines):
        text = f"step {i % 7}/7 running: loss=0.{i % 9973:04d} accuracy=0.98 epoch {i // 1000}"
        if every and i % every == 0:
            text += f" token={token}"
        out.append(f"2026-11-22T03:04:05.{i % 1_000_000_000:09d}Z {text}\n")
    return "".join(out).encode()


def rate(data: bytes, lines: int, masker: Masker | None) -> float:
    parser = KubeletLineParser(masker=masker)
    start = time.perf_counter()
    for offset in range(0, len(data), CHUNK):
        parser.feed(data[offset : offset + CHUNK])
    parser.flush()
    return lines / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hits", type=float, default=0.0)
    args = parser.parse_args()
    environment = {
        "ZENML_STORE_API_TOKEN": secrets.token_urlsafe(48),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "ZENML_STORE_URL": "https://zenml.example",
    }
    masker = Masker.for_environment(environment, compile_name_pattern(DEFAULT_SECRET_NAME_PATTERN))
    data = log_bytes(args.lines, args.hits, environment["ZENML_STORE_API_TOKEN"])
    for label, each in (("no masker", None), ("masker", masker)):
        runs = [rate(data, args.lines, each) for _ in range(args.runs)]
        shown = ", ".join(f"{r:,.0f}" for r in runs)
        print(f"{label:10} median {statistics.median(runs):,.0f} lines/s  ({shown})")


if __name__ == "__main__":
    main()

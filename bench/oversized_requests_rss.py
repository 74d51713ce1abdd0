"""The daemon's memory (RSS) around oversized requests: what a 100 MB body costs it.

For "Survive what a real apiserver does every day", item 5 (input limits): a body over
``ZWMD_API_MAX_BODY_BYTES`` is refused from its ``Content-Length`` before it is read.
Measured from the outside only: ``python -m zwmd serve --local`` as a subprocess
(:func:`tests.daemon_process.start_daemon`), plain HTTP on 127.0.0.1, and
``/proc/<pid>/status`` of the daemon's process (VmRSS now, VmHWM the peak since it
started). Each request is sent whole, as httpx sends it, and its status printed:

- ``POST /v1/workloads/{id}/run`` with an environment of ``--mb`` MB (one value);
- ``POST /v1/workloads/{id}/logs`` with a message of ``--mb`` MB;
- ``POST /v1/workloads/{id}/run`` with 1,600 arguments of 1 KB (a 1.6 MB Job);

and then how many Jobs the daemon knows (``GET /v1/workloads``). No figure is asserted.

    python bench/oversized_requests_rss.py [--mb 100]

measured on main before the limits (5873f36, 2 cores, Python 3.11, this script run
from an export of that commit with its ``PYTHONPATH``)::

    start: RSS 123 MiB
    environment 100 MB: 502 (localkube refused the Secret: its 64 MiB body limit) after
        3.4 s; RSS 722 MiB, VmHWM 1013 MiB; the Job was created first and stays
    message 100 MB: 204 after 2.2 s (100 MB written to the log store); RSS 447 MiB
    1,600 arguments of 1 KB: 202 (a 1.6 MB Job)
    workloads the daemon knows: 2

measured with the limits (5d0aca5, same machine and command)::

    start: RSS 123 MiB
    environment 100 MB: 413 (request body, ZWMD_API_MAX_BODY_BYTES) after 1.2 s;
        RSS 125 MiB, VmHWM 125 MiB
    message 100 MB: 413 after 1.2 s; RSS 125 MiB, VmHWM 125 MiB
    1,600 arguments of 1 KB: 422 (arguments: the Job would be 1644217 bytes)
    workloads the daemon knows: 0

The 1.2 s is the client sending its 100 MB: the daemon answers from the headers and
discards the rest unread.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemon_process import start_daemon


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) // 1024
    return fields["VmRSS"], fields["VmHWM"]


def post(client: httpx.Client, path: str, body: bytes) -> str:
    started = time.monotonic()
    try:
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        answer = f"{response.status_code} {response.text[:100]}"
    except httpx.HTTPError as exc:
        answer = f"no answer ({type(exc).__name__})"
    return f"{answer} after {time.monotonic() - started:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the large bodies, MB")
    args = parser.parse_args()
    size = args.mb * 1000 * 1000
    with tempfile.TemporaryDirectory() as tmp:
        daemon = start_daemon(Path(tmp))
        pid = daemon.process.pid
        try:
            headers = {"Authorization": f"Bearer {daemon.token}"}
            with httpx.Client(base_url=daemon.url, headers=headers, timeout=300) as client:
                time.sleep(2)
                print(f"start: RSS {rss(pid)[0]} MiB")
                big = b'{"image": "runner:1", "environment": {"BIG": "' + b"x" * size + b'"}}'
                answer = post(client, f"/v1/workloads/{uuid.uuid4()}/run", big)
                print(f"environment {args.mb} MB: {answer}; RSS, VmHWM {rss(pid)} MiB")
                del big
                message = b'{"message": "' + b"m" * size + b'"}'
                answer = post(client, f"/v1/workloads/{uuid.uuid4()}/logs", message)
                print(f"message {args.mb} MB: {answer}; RSS, VmHWM {rss(pid)} MiB")
                del message
                arguments = ", ".join(['"' + "a" * 1024 + '"'] * 1600)
                body = f'{{"image": "runner:1", "arguments": [{arguments}]}}'.encode()
                answer = post(client, f"/v1/workloads/{uuid.uuid4()}/run", body)
                print(f"1,600 arguments of 1 KB: {answer}; RSS, VmHWM {rss(pid)} MiB")
                items = client.get("/v1/workloads").json()["items"]
                print(f"workloads the daemon knows: {len(items)}")
        finally:
            daemon.stop()


if __name__ == "__main__":
    main()

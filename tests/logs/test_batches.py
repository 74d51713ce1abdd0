"""The batch codec: what is encoded decodes back whole, in any pieces; a torn batch is not."""

from __future__ import annotations

from zwmd.logs.batches import BatchDecoder, decode_batches, decode_commit, encode_batch
from zwmd.logs.records import LogRecord
from zwmd.logs.store import Checkpoint

BASE = 1_795_000_000_000_000_000


def record(i: int, source: str = "runner", message: str | None = None) -> LogRecord:
    return LogRecord(BASE + i * 1000, source, 20, f"line {i}" if message is None else message, 3)


def encoded(batches: list[list[LogRecord]], close: bool = False) -> tuple[bytes, list[Checkpoint]]:
    """The bytes of ``batches`` one after another, and the checkpoint after each."""
    data, checkpoint, checkpoints = b"", Checkpoint(), []
    for i, records in enumerate(batches):
        checkpoint = checkpoint.advanced(records)
        if close and i == len(batches) - 1:
            checkpoint = Checkpoint(checkpoint.records, checkpoint.marks, True)
        checkpoints.append(checkpoint)
        data += encode_batch(records, checkpoint)
    return data, checkpoints


SENT = [
    [record(0), record(1, "zwmd"), record(2, message='quotes " and \\ and \u00e9 and \u2603')],
    [],
    [record(3, "builder"), record(4)],
]


def test_batches_round_trip_with_their_checkpoints_and_ends() -> None:
    data, checkpoints = encoded(SENT, close=True)
    batches = decode_batches(data, 3)
    assert [b.records for b in batches] == SENT
    assert [b.checkpoint for b in batches] == checkpoints
    assert batches[-1].checkpoint.closed
    assert batches[-1].checkpoint.records == 5
    assert batches[-1].end == len(data)
    assert all(data[b.end - 1 : b.end] == b"\n" for b in batches)


def test_a_lone_surrogate_is_stored_replaced() -> None:
    data, _ = encoded([[record(0, message="bad \udc80 text")]])
    [batch] = decode_batches(data, 3)
    assert batch.records[0].message == "bad ? text"  # see zwmd.logs.records.clean_text


def test_a_torn_batch_is_not_decoded() -> None:
    data, _ = encoded(SENT)
    ends = [b.end for b in decode_batches(data, 3)]
    first_end = ends[0]
    for cut in range(len(data) + 1):  # cut anywhere: only the batches before are whole
        assert [b.end for b in decode_batches(data[:cut], 3)] == [e for e in ends if e <= cut]
    # a commit line cut short, or garbage where a record should be, ends the data
    assert [b.records for b in decode_batches(data[:-3], 3)] == SENT[:2]
    garbage = data[:first_end] + b'{"s":"runner","t":\x00\x00\n' + data[first_end:]
    decoder = BatchDecoder(3)
    assert [b.records for b in decoder.feed(garbage)] == SENT[:1]
    assert decoder.torn
    assert decoder.end == first_end
    assert decoder.feed(data) == []
    assert decode_commit(b'{"c":{"n":1,"k":[["runner",1,0]],"x":false}}') is None


def test_bytes_fed_in_any_pieces_decode_as_a_whole() -> None:
    data, _ = encoded(SENT, close=True)
    whole = decode_batches(data, 3)
    for size in (1, 7, 64, len(data)):
        decoder = BatchDecoder(3, offset=100)
        got = []
        for start in range(0, len(data), size):
            got.extend(decoder.feed(data[start : start + size]))
        assert [b.records for b in got] == [b.records for b in whole]
        assert [b.end for b in got] == [b.end + 100 for b in whole]
        assert decoder.end == len(data) + 100


def test_a_decoder_for_one_source_keeps_every_batch_and_that_source_only() -> None:
    data, checkpoints = encoded(SENT)
    batches = decode_batches(data, 3, source="runner")
    assert [b.records for b in batches] == [[r for r in rs if r.source == "runner"] for rs in SENT]
    assert [b.checkpoint for b in batches] == checkpoints


def test_restart_decodes_again_from_the_last_whole_batch() -> None:
    data, _ = encoded(SENT)
    first_end = decode_batches(data, 3)[0].end
    decoder = BatchDecoder(3)
    assert len(decoder.feed(data[: first_end + 10])) == 1
    assert decoder.restart() == first_end
    assert [b.records for b in decoder.feed(data[first_end:])] == SENT[1:]

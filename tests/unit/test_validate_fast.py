"""``kvspec validate``'s fast path agrees with its typed reference path, on every kind of stream.

The fast path (msgspec readers into rows, the contract checked on rows) must give the same events,
the same verdict, the same violation and the same witness as the reference (field-by-field readers,
``Checker.feed`` per event), and bad input the reference's own error.  Streams are generated
(Hypothesis) over a small pool of block hashes, so that every rule is broken often, then written in
each format: Dynamo JSON lines and ZMQ msgpack (frames or bare payloads, tagged maps or tagged
arrays, signed or unsigned hashes, several events per batch).  Bad input comes from mutating good
streams: bytes of JSON lines, values of msgpack records.
"""

from __future__ import annotations

import doctest
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

msgpack = pytest.importorskip("msgpack")  # the ``dynamo`` extra; ZMQ streams need it

from kvspec.validate import Checker, Event, StreamError, check_rows, first_violation, scan, witness_of  # noqa: E402
from kvspec.validate.fast import NotFast, dynamo_rows, zmq_rows  # noqa: E402
from kvspec.validate.formats import parse_dynamo, parse_zmq  # noqa: E402

U64 = 2**64
#: block hashes: small, large (above 2^63: negative as int64), and one that is no u64 (in JSON; a
#: ZMQ stream reads it as its two's complement)
POOL = [1, 2, 3, 4, 5, 6, 2**63 + 5, U64 - 1, -7]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- abstract streams -------------------------------------------------------------------------------


@st.composite
def streams(draw, *, workers=(1, 2), tiers=("device", "host_pinned"), huge=True):
    """``(worker, rank, tier, seq, kind, parent, hashes)`` rows that mostly keep the contract — one
    main stream, consecutive ids, stores of blocks not held under a held parent, removes of held
    blocks — and break each rule now and then (an id skipped or repeated, a parent or block drawn
    from the whole pool, a clear), so that violations come late as well as early."""
    pool = POOL + ([U64 + 3] if huge else [])  # msgpack cannot carry a hash above u64
    next_id: dict[tuple[int, int], int] = {}
    held: dict[tuple, list[int]] = {}  # what a clean stream holds (with repeats), per (worker, rank, tier)
    rows = []
    for _ in range(draw(st.integers(0, 16))):
        worker = draw(st.sampled_from(workers[:1] * 6 + workers))
        rank = draw(st.sampled_from((0,) * 6 + (1,)))
        tier = draw(st.sampled_from(tiers[:1] * 6 + tiers))
        key = (worker, rank)
        seq = next_id.get(key, draw(st.sampled_from((0, 5))))
        seq = max(0, seq + draw(st.sampled_from((0,) * 20 + (-2, -1, 1, 2))))
        next_id[key] = seq + 1
        mine = held.setdefault((worker, rank, tier), [])
        wild = draw(st.sampled_from((False,) * 9 + (True,)))  # break a rule on purpose
        kind = draw(st.sampled_from(("stored",) * 5 + ("removed",) * 3 + ("cleared",)))
        if kind == "cleared":
            mine.clear()
            rows.append((worker, rank, tier, seq, kind, None, ()))
        elif kind == "stored":
            fresh = [h for h in pool if h not in mine and (0 <= h < U64 or wild)]
            choices = mine * 2 + pool if wild else fresh or pool  # wild: held ones again, repeats
            hashes = tuple(draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3, unique=not wild)))
            if draw(st.sampled_from((False,) * 5 + (True,))):  # a block twice in one store: held twice
                hashes += hashes[-1:]
            parents = pool if wild else mine
            parent = draw(st.one_of(st.none(), st.sampled_from(parents))) if parents else None
            mine.extend(hashes)
            rows.append((worker, rank, tier, seq, kind, parent, hashes))
        else:
            if wild:  # repeats, blocks not held
                hashes = tuple(draw(st.lists(st.sampled_from(mine * 3 + pool), max_size=3)))
            else:  # held blocks, a block held twice maybe twice
                at = draw(st.lists(st.integers(0, len(mine) - 1), max_size=3, unique=True)) if mine else []
                hashes = tuple(mine[i] for i in at)
            for h in hashes:
                if h in mine:
                    mine.remove(h)
            rows.append((worker, rank, tier, seq, kind, None, hashes))
    return rows


def dynamo_lines(rows) -> bytes:
    out = []
    for worker, rank, tier, seq, kind, parent, hashes in rows:
        if kind == "cleared":
            data = "cleared" if seq % 2 else {"cleared": None}
        elif kind == "stored":
            data = {"stored": {"parent_hash": parent, "blocks": [{"block_hash": h, "tokens_hash": 9} for h in hashes]}}
        else:
            data = {"removed": {"block_hashes": list(hashes)}}
        out.append(json.dumps({"worker_id": worker, "storage_tier": tier,
                               "event": {"event_id": seq, "data": data, "dp_rank": rank}}))
    return ("\n".join(out) + "\n").encode() if out else b""


_MEDIUM = {"device": "GPU", "host_pinned": "CPU"}


def _signed(h):
    return h - U64 if h >= 2**63 else h


def zmq_records(rows, *, frames=True, arrays=False, signed=False, batch_sizes=(1,)):
    """KVEventBatch records of ``rows`` (one worker): consecutive rows of one rank form a batch
    whose sequence number is its first row's id; only that row's id is kept (as the publisher
    sends)."""
    records, i, k = [], 0, 0
    while i < len(rows):
        size = batch_sizes[k % len(batch_sizes)]
        k += 1
        batch = [rows[i]]
        while len(batch) < size and i + len(batch) < len(rows) and rows[i + len(batch)][1] == rows[i][1]:
            batch.append(rows[i + len(batch)])
        i += len(batch)
        events = []
        for _, _, tier, _, kind, parent, hashes in batch:
            hs = [_signed(h) for h in hashes] if signed else list(hashes)
            p = _signed(parent) if signed and parent is not None else parent
            medium = _MEDIUM[tier]
            if kind == "cleared":
                events.append(["AllBlocksCleared"] if arrays else {"type": "AllBlocksCleared"})
            elif kind == "stored":
                events.append(["BlockStored", hs, p, [1, 2], 2, None, medium] if arrays else
                              {"type": "BlockStored", "block_hashes": hs, "parent_block_hash": p, "token_ids": [1, 2],
                               "block_size": 2, "lora_id": None, "medium": medium, "extra_keys": [None]})
            else:
                events.append(["BlockRemoved", hs, medium] if arrays else
                              {"type": "BlockRemoved", "block_hashes": hs, "medium": medium, "group_idx": 0})
        rank = batch[0][1]
        payload = [1.5, events, None if signed and rank == 0 else rank]
        if frames:
            records.append([b"kv", batch[0][3].to_bytes(8, "big"), msgpack.packb(payload)])
        else:
            records.append(payload)
    return records


def pack(records) -> bytes:
    return b"".join(msgpack.packb(r) for r in records)


ZMQ_SHAPES = st.fixed_dictionaries({"frames": st.booleans(), "arrays": st.booleans(), "signed": st.booleans(),
                                    "batch_sizes": st.lists(st.integers(1, 3), min_size=1, max_size=3)})


# --- the readers give the same events -----------------------------------------------------------------


def fast_events(chunks) -> list[Event]:
    return [Event(i, *row) for i, row in enumerate(row for rows in chunks for row in rows)]


@SETTINGS
@given(streams())
def test_dynamo_readers_agree(rows):
    data = dynamo_lines(rows)
    assert fast_events(dynamo_rows(io.BytesIO(data))) == list(parse_dynamo(io.StringIO(data.decode())))


@SETTINGS
@given(streams(workers=(0,), huge=False), ZMQ_SHAPES)
def test_zmq_readers_agree(rows, shape):
    data = pack(zmq_records(rows, **shape))
    assert fast_events(zmq_rows(io.BytesIO(data))) == list(parse_zmq(io.BytesIO(data)))


# --- the contract on rows gives the same verdict and state as Checker.feed ----------------------------


def _state(checker: Checker):
    return {key: held for key, held in checker.held.items() if held}, checker.last_seq, checker.events


@SETTINGS
@given(streams(), st.sampled_from(["exact", "copies"]), st.booleans(), st.integers(1, 4))
def test_check_rows_is_checker_feed(rows, mode, gaps, chunk):
    events = [Event(i, *row) for i, row in enumerate(rows)]
    reference, fast = Checker(mode, gaps), Checker(mode, gaps)
    expected = None
    for e in events:
        expected = reference.feed(e)
        if expected is not None:
            break
    got = check_rows(fast, [rows[i:i + chunk] for i in range(0, len(rows), chunk)])
    assert got == expected
    assert _state(fast) == _state(reference)
    assert got == first_violation(events, mode, gaps)


def _row(kind, *hashes, parent=None, seq=None, tier="device"):
    return (1, 0, tier, seq, kind, parent, hashes)


#: corners that random streams seldom reach: a block twice in one event, an id repeated
CORNERS = {
    "stored twice in one event, removed twice in one": [_row("stored", 1, 1), _row("removed", 1, 1)],
    "removed twice in one event, held once": [_row("stored", 1), _row("removed", 1, 1)],
    "held twice, removed one by one": [_row("stored", 1, 1), _row("removed", 1), _row("removed", 1),
                                       _row("removed", 1)],
    "a store naming its own parent": [_row("stored", 1), _row("stored", 1, parent=1)],
    "an id repeated": [_row("stored", 1, seq=4), _row("stored", 2, seq=4), _row("stored", 3, seq=5)],
    "an id going back": [_row("stored", 1, seq=4), _row("stored", 2, seq=3)],
    "a clear on another tier": [_row("stored", 1), _row("cleared", tier="disk"), _row("removed", 1)],
    "an empty remove": [_row("removed")],
    "a hash just past u64": [_row("stored", U64)],
}


@pytest.mark.parametrize("rows", CORNERS.values(), ids=CORNERS.keys())
@pytest.mark.parametrize("mode", ["exact", "copies"])
@pytest.mark.parametrize("gaps", [True, False])
def test_check_rows_is_checker_feed_on_corners(rows, mode, gaps):
    test_check_rows_is_checker_feed.hypothesis.inner_test(rows, mode, gaps, 2)


# --- files: verdict, violation, witness and errors are the reference's -----------------------------


def outcome(path, mode, fast, window_limit=20_000):
    """What ``validate_file`` gives (events read, violation, witness) and the window it is cut
    from, or the error."""
    try:
        found = scan(str(path), mode=mode, fast=fast, window_limit=window_limit)
    except StreamError as exc:
        return ("error", str(exc))
    return (found.events, found.violation, witness_of(found, mode=mode), found.window)


def assert_same_outcome(data: bytes, mode: str, fast_decides: bool | None):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream"
        path.write_bytes(data)
        assert outcome(path, mode, True) == outcome(path, mode, False)
        if fast_decides is not None:
            try:
                assert scan(str(path), mode=mode).fast is fast_decides
            except StreamError:
                assert not fast_decides


@SETTINGS
@given(streams(), st.sampled_from(["exact", "copies"]))
def test_dynamo_files_agree_and_the_fast_path_decides(rows, mode):
    assert_same_outcome(dynamo_lines(rows), mode, fast_decides=True)


@SETTINGS
@given(streams(workers=(0,), huge=False), ZMQ_SHAPES, st.sampled_from(["exact", "copies"]))
def test_zmq_files_agree_and_the_fast_path_decides(rows, shape, mode):
    assert_same_outcome(pack(zmq_records(rows, **shape)), mode, fast_decides=True)


@SETTINGS
@given(streams(huge=False), st.booleans(), st.integers(1, 5), st.integers(1, 6), st.sampled_from(["exact", "copies"]))
def test_the_window_kept_from_small_chunks_is_the_references(rows, json_lines, chunk, window_limit, mode):
    """The window of events before the violation, kept from the last chunks of rows, holds the
    same events as the reference's event by event window, whatever the chunk and window sizes;
    and records cut across reads are read whole."""
    from kvspec.validate import fast

    data = dynamo_lines(rows) if json_lines else pack(zmq_records([(0, *r[1:]) for r in rows], frames=chunk % 2 == 0))
    saved = fast.CHUNK_BYTES, fast.CHUNK_ROWS, fast._READ
    fast.CHUNK_BYTES, fast.CHUNK_ROWS, fast._READ = chunk * 40, chunk, chunk * 7  # records cut across reads
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "stream"
            path.write_bytes(data)
            assert outcome(path, mode, True, window_limit) == outcome(path, mode, False, window_limit)
            assert scan(str(path), mode=mode).fast  # well-formed: the fast path read it all itself
    finally:
        fast.CHUNK_BYTES, fast.CHUNK_ROWS, fast._READ = saved


_JUNK = [b"\r", b"\n", b"\r\n", b" ", b"\x0c", b"\xff", b"\xc3\xa9", b'"', b",", b"-", b"0", b"1.5", b"null",
         b"true", b"[]", b"{}", b"e9", b"\\u00e9", b"99999999999999999999999", b'"device"', b"NaN"]


@SETTINGS
@given(streams(), st.data())
def test_mutated_json_lines_give_the_reference_verdict_or_error(rows, data):
    """Any bytes: the fast path either decides like the reference or hands over to it."""
    raw = bytearray(dynamo_lines(rows) or b'{"worker_id": 1}\n')
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw)))
        cut = data.draw(st.integers(0, 3))
        raw[at:at + cut] = data.draw(st.sampled_from(_JUNK))
    assert_same_outcome(bytes(raw), data.draw(st.sampled_from(["exact", "copies"])), fast_decides=None)


@pytest.mark.parametrize("padding", [0, 200], ids=["within-read-ahead", "beyond-read-ahead"])
def test_bytes_that_are_not_utf8_are_judged_when_their_line_is_reached(tmp_path, padding):
    """Found by the property test above with more examples: a violation on line 1, then a line
    that is not UTF-8.  The fast path stops at the violation; the reference decoded the file
    strictly and so judged the bytes its text reader had buffered ahead (8 KiB), reporting bad
    input when they were near and the violation when they were far.  Both now judge a line's
    text with its JSON, when the line is reached, whatever lies between them."""
    violation = dynamo_lines([_row("removed", 5, seq=0)])
    blank = (b" " * 100 + b"\n") * padding  # blank lines: read and skipped by both paths
    bad = b'{"worker_id": 1, "event": \xff}'  # the last line, unended: the fast path reads it last, alone
    first = tmp_path / "violation-first"
    first.write_bytes(violation + blank + bad)
    assert scan(str(first)).fast and scan(str(first)).violation.kind == "removed-not-held"
    assert_same_outcome(first.read_bytes(), "exact", fast_decides=True)
    second = tmp_path / "bad-bytes-first"
    second.write_bytes(blank + bad + b"\n" + violation)
    line = padding + 1
    for fast in (True, False):
        with pytest.raises(StreamError, match=rf"^{second}: line {line}: not UTF-8 \(invalid start byte\)$"):
            scan(str(second), fast=fast)


_VALUES = [None, True, 1.5, -3, -(2**63), U64 - 1, "GPU", "x", b"\x00", [], [1], {}, {"a": 1}]


def _mutate(obj, data):
    """A copy of ``obj`` (a decoded record) with one value replaced, removed or added somewhere."""
    if isinstance(obj, list) and obj and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(obj) - 1))
        return obj[:i] + [_mutate(obj[i], data)] + obj[i + 1:]
    if isinstance(obj, dict) and obj and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(obj)))
        return {**obj, key: _mutate(obj[key], data)}
    choice = data.draw(st.integers(0, 2))
    if choice == 0 and isinstance(obj, dict) and obj:
        key = data.draw(st.sampled_from(sorted(obj)))
        return {k: v for k, v in obj.items() if k != key}
    if choice == 1 and isinstance(obj, (list, dict)):
        extra = data.draw(st.sampled_from(_VALUES))
        return obj + [extra] if isinstance(obj, list) else {**obj, data.draw(st.sampled_from(["medium", "type", "zz"])): extra}
    return data.draw(st.sampled_from(_VALUES + ["BlockStored", "BlockRemoved", "AllBlocksCleared"]))


@SETTINGS
@given(streams(workers=(0,), huge=False), ZMQ_SHAPES, st.data())
def test_mutated_msgpack_records_give_the_reference_verdict_or_error(rows, shape, data):
    """Well-formed msgpack values of the wrong shape or type anywhere in a record (frames decoded
    to mutate the payload), plus truncation and trailing bytes: reference verdict or error."""
    empty = [1.0, [], 0]
    records = zmq_records(rows, **shape) or [[b"kv", bytes(8), msgpack.packb(empty)] if shape["frames"] else empty]
    i = data.draw(st.integers(0, len(records) - 1))
    record = records[i]
    if shape["frames"] and data.draw(st.booleans()):
        payload = _mutate(msgpack.unpackb(record[2], raw=False), data)
        record = [record[0], record[1], msgpack.packb(payload)]
    else:
        record = _mutate(record, data)
    raw = pack(records[:i] + [record] + records[i + 1:])
    tail = data.draw(st.sampled_from([0, 0, 0, -1, -3, 1]))
    raw = raw[:tail] if tail < 0 else raw + b"\xc1" * tail
    assert_same_outcome(raw, data.draw(st.sampled_from(["exact", "copies"])), fast_decides=None)


def test_a_frames_record_cut_at_byte_0_is_the_references_error(tmp_path):
    """The shrunk failure of the property test above: one frames record whose payload is ``nil``,
    its last byte cut.  The fast path read it as a clean empty stream, because the C unpacker's
    ``tell()`` counts the bytes of a record begun and not finished; it must hand over, and the
    reference reports the truncation."""
    raw = msgpack.packb([b"kv", bytes(8), msgpack.packb(None)])[:-1]
    with pytest.raises(NotFast, match="truncated"):
        list(zmq_rows(io.BytesIO(raw)))
    path = tmp_path / "s.msgpack"
    path.write_bytes(raw)
    with pytest.raises(StreamError, match=r"^record 1: truncated msgpack data after byte 0$"):
        scan(str(path))
    assert_same_outcome(raw, "exact", fast_decides=False)


@pytest.mark.parametrize("frames", [True, False], ids=["frames", "bare"])
@pytest.mark.parametrize("read", [1 << 20, 5], ids=["one-read", "cut-across-reads"])
def test_every_cut_of_a_msgpack_stream_gives_the_references_verdict_or_error(tmp_path, frames, read):
    """Each prefix of a well-formed stream of two batches: a prefix ending between records is read
    by the fast path, and any other is the reference's truncation error, however the reads fall."""
    from kvspec.validate import fast

    rows = [_row("stored", 1, seq=0), _row("removed", 1, seq=1)]
    raw = pack(zmq_records([(0, *r[1:]) for r in rows], frames=frames))
    ends = {0, len(pack(zmq_records([(0, *rows[0][1:])], frames=frames))), len(raw)}
    saved = fast._READ
    fast._READ = read
    try:
        for cut in range(len(raw) + 1):
            assert_same_outcome(raw[:cut], "exact", fast_decides=cut in ends)
    finally:
        fast._READ = saved


# --- what the fast path does not read -----------------------------------------------------------------


def test_fields_the_contract_does_not_read_are_not_decoded_by_the_fast_path(tmp_path):
    """The one place the paths differ, on purpose: msgspec skips a map's unknown fields without
    decoding them (as vLLM's decoder and Dynamo's relay do), so text that is not UTF-8 inside
    ``lora_name`` passes the fast path; the reference reader decodes every value and rejects the
    record.  ``kvspec validate`` takes the fast path's verdict."""
    event = {"type": "BlockStored", "block_hashes": [1], "parent_block_hash": None, "medium": "GPU",
             "lora_name": "x"}
    payload = msgpack.packb([1.0, [event], 0]).replace(b"\xa1x", b"\xa1\xff")
    path = tmp_path / "s.msgpack"
    path.write_bytes(msgpack.packb([b"kv", bytes(8), payload]))
    assert scan(str(path)).fast and scan(str(path)).violation is None
    with pytest.raises(StreamError, match="record 1"):
        scan(str(path), fast=False)


@pytest.mark.parametrize("module", ["", ".contract", ".witness", ".formats", ".fast", ".files"])
def test_docstring_examples(module):
    import importlib

    result = doctest.testmod(importlib.import_module(f"kvspec.validate{module}"))
    assert result.attempted > 0 and result.failed == 0

"""``kvspec validate``: recorded real streams, every rule of the contract, witnesses, bad input.

The ``vllm-*.msgpack`` recordings were made on CPU by ``kvspec.adapters.vllm.record``: vLLM
0.33's real ``KVCacheManager`` published through its own ``ZmqEventPublisher`` (frames as sent);
``dynamo-vllm-v1.jsonl`` is finding V1's real vLLM stream as Dynamo ``RouterEvent`` JSON lines.
None of these tests needs an engine installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest

from kvspec.cli import main
from kvspec.validate import first_violation, parse_dynamo, validate_file

DATA = Path(__file__).parent / "data"


def run(capsys, *args):
    code = main(["validate", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


# -- real recordings --------------------------------------------------------------------------------


def test_clean_vllm_stream_passes(capsys):
    code, out, _ = run(capsys, DATA / "vllm-clean.msgpack")
    assert code == 0 and "OK, 4 events" in out


def test_vllm_duplicate_copy_is_found_with_a_two_event_witness(capsys):
    code, out, _ = run(capsys, DATA / "vllm-copies.msgpack")
    assert code == 1
    assert "VIOLATION stored-twice at event 1" in out
    assert "minimal witness (2 events)" in out


def test_vllm_copies_stream_is_consistent_as_a_per_copy_stream(capsys):
    code, out, _ = run(capsys, "--mode", "copies", DATA / "vllm-copies.msgpack")
    assert code == 0 and "OK, 6 events" in out


def test_full_report_stream_announces_a_hit_again(capsys):
    code, out, _ = run(capsys, DATA / "vllm-full.msgpack")
    assert code == 1 and "stored-twice" in out and "Stored(parent=None" in out


def test_dynamo_json_stream_of_finding_v1(capsys):
    code, out, _ = run(capsys, DATA / "dynamo-vllm-v1.jsonl")
    assert code == 1 and "stored-twice at event 2" in out and "minimal witness (3 events)" in out
    code, out, _ = run(capsys, "--mode", "copies", DATA / "dynamo-vllm-v1.jsonl")
    assert code == 0


def test_real_sglang_stream_with_signed_hashes_is_clean(capsys):
    """SGLang 0.5.23 publishes signed int64 hashes; Dynamo's ZMQ relay reads them as u64."""
    records = [msgpack.unpackb(r[2], raw=False)
               for r in msgpack.Unpacker(open(DATA / "sglang.msgpack", "rb"), raw=False)]
    assert any(h < 0 for r in records for ev in r[1] for h in ev.get("block_hashes", []))
    code, out, _ = run(capsys, DATA / "sglang.msgpack")
    assert code == 0 and "OK, 6 events" in out


def test_zmq_frames_carry_vllm_batch_sequence_numbers():
    records = list(msgpack.Unpacker(open(DATA / "vllm-clean.msgpack", "rb"), raw=False))
    assert [int.from_bytes(r[1], "big") for r in records] == [0, 1, 2, 3]
    batch = msgpack.unpackb(records[0][2], raw=False)
    assert batch[1][0]["type"] == "BlockStored"


# -- each rule, on small synthetic Dynamo streams -----------------------------------------------------


def line(event_id, data, worker=1, rank=0, tier="device"):
    return json.dumps({"worker_id": worker, "storage_tier": tier,
                       "event": {"event_id": event_id, "data": data, "dp_rank": rank}})


def stored(parent, *hashes):
    return {"stored": {"parent_hash": parent, "blocks": [{"block_hash": h, "tokens_hash": 1} for h in hashes]}}


def removed(*hashes):
    return {"removed": {"block_hashes": list(hashes)}}


def kind(lines, mode="exact"):
    found = first_violation(parse_dynamo(lines), mode)
    return None if found is None else (found.kind, found.index)


def test_rules():
    assert kind([line(0, stored(None, 1, 2)), line(1, stored(2, 3)), line(2, removed(3, 2, 1))]) is None
    assert kind([line(0, stored(5, 1))]) == ("parent-not-held", 0)
    assert kind([line(0, stored(None, 1)), line(1, removed(1)), line(2, stored(1, 2))]) == ("parent-not-held", 2)
    assert kind([line(0, removed(9))]) == ("removed-not-held", 0)
    assert kind([line(0, stored(None, 1)), line(1, stored(None, 1))]) == ("stored-twice", 1)
    assert kind([line(0, stored(None, 1)), line(1, stored(None, 1)), line(2, removed(1)), line(3, removed(1))],
                "copies") is None
    assert kind([line(0, stored(None, 1)), line(2, removed(1))]) == ("gap", 1)
    assert kind([line(0, stored(None, 1)), line(0, stored(None, 2), rank=1)]) is None  # ids per (worker, rank)
    assert kind([line(0, stored(None, -5))]) == ("hash-not-u64", 0)


def test_clears_reach_only_the_tier_they_name():
    host = [line(0, stored(None, 1), tier="host_pinned"), line(1, "cleared", tier="device"),
            line(2, removed(1), tier="host_pinned")]
    assert kind(host) is None
    assert kind([line(0, stored(None, 1)), line(1, "cleared"), line(2, removed(1))]) == ("removed-not-held", 2)


def test_witness_is_minimal_among_noise(tmp_path, capsys):
    """1,000 unrelated events around the cause: the witness keeps the cause and the violation."""
    lines, eid = [], 0
    for i in range(500):
        lines.append(line(eid, stored(None, 10_000 + i)))
        eid += 1
    lines.append(line(eid, stored(None, 1, 2)))
    eid += 1
    for i in range(500):
        lines.append(line(eid, removed(10_000 + i)))
        eid += 1
    lines.append(line(eid, removed(2)))
    eid += 1
    lines.append(line(eid, stored(2, 3)))  # parent 2 was removed
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n")
    count, violation, witness = validate_file(str(path))
    assert violation.kind == "parent-not-held" and violation.index == 1002
    assert [e.index for e in witness] == [500, 1001, 1002]
    assert count == 1003


# -- bad input: one line, exit 2 ----------------------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"not json at all\n",
    b'{"worker_id": 1}\n',
    b'{"worker_id": 1, "event": {"event_id": 0, "data": {"weird": 1}}}\n',
    b'{"worker_id": "x", "event": {"event_id": 0, "data": "cleared"}}\n',
    b"\x93\x01\x02",  # truncated msgpack array
    msgpack.packb([b"", (0).to_bytes(8, "big"), msgpack.packb([0.0, [["Nope"]], 0])]),
    msgpack.packb([1.0, [{"type": "BlockStored"}], 0]),
    b"\xff\xfe\x00garbage",
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content):
    path = tmp_path / "bad"
    path.write_bytes(content)
    code, out, err = run(capsys, path)
    assert code == 2, out
    assert err.count("\n") == 1 and err.startswith("kvspec validate: ") and "Traceback" not in err


def test_missing_file_is_exit_2(capsys):
    code, _, err = run(capsys, "/nonexistent/stream.jsonl")
    assert code == 2 and "no such file" in err

"""``kvspec validate FILE...``: check a KV-event stream recorded from a running engine.

A router (Dynamo's ``KvIndexer``, llm-d, aibrix) trusts each worker's event stream to describe the
blocks the worker holds.  This validator replays a recorded stream against that **router
contract**, per ``(worker, dp rank, storage tier)``:

1. **Parents first.**  A ``Stored`` whose parent is not currently held (never announced, or
   already removed) is a violation: the router cannot attach it (``ParentBlockNotFound``).
2. **Remove what is held.**  A ``Removed`` naming a block that is not held is a violation.
3. **Announce once.**  A ``Stored`` of a block already held is a violation unless the stream's
   mode allows copies (``--mode copies``: vLLM's per-copy events; the block is then held until as
   many removes as stores).
4. **Clears reach only the tier they name**: ``Cleared`` forgets the (worker, rank)'s blocks on
   its tier, nothing else.
5. **No gaps.**  Event ids (Dynamo) or batch sequence numbers (vLLM / SGLang ZMQ frames) increase
   by exactly one per (worker, rank).
6. **Wire hashes are u64** (what Dynamo's JSON events carry); a negative hash in a JSON stream is a
   violation.  In a ZMQ stream a negative int64 (SGLang publishes signed hashes) is read as its
   two's-complement u64, as Dynamo's ZMQ relay does (checked on the 1.6.1 wheel).

Formats (detected from the first byte; ``--format`` forces one):

* ``dynamo`` — JSON lines of ``RouterEvent`` (``{"worker_id", "event": {"event_id", "data",
  "dp_rank"}, "storage_tier"}``), e.g. what ``dump_tree_as_events`` or an event tap writes;
* ``zmq`` — vLLM's (and SGLang's) ``KVEventBatch`` msgpack, as the ZMQ publisher sends it: a
  sequence of msgpack records, each the multipart frames ``[topic, seq (8 bytes big-endian),
  payload]`` or a bare payload ``[ts, events, dp_rank]``; events are maps tagged ``{"type":
  "BlockStored", "block_hashes", "parent_block_hash", ...}`` as vLLM's msgspec structs encode, or
  tagged arrays ``["BlockStored", hashes, parent, ...]``.  ``--worker N`` names the worker
  (default 0).

The first violation is printed with a **minimal witness**: the events of its stream that mention
its blocks, then reduced by deleting events while the same violation (same kind, same event)
persists.  Exit status: 0 clean, 1 violation, 2 bad input (one line, never a traceback).

**Speed and memory.**  Streams of 10^6 events are read in seconds: msgspec decodes them into
plain rows and the contract is checked on rows, falling back to the typed reference for any event
that is not plainly fine and for any input the fast readers do not expect.  Memory is bounded by
the blocks held: one pass, a chunk at a time; the witness is gathered by a second pass that keeps
a window of events before the violation (``kvspec bench validate`` measures both).

The modules, each importing only the ones before it:

1. :mod:`~kvspec.validate.contract` — events, violations and the rules (:class:`Checker`);
2. :mod:`~kvspec.validate.witness` — the minimal witness of a violation;
3. :mod:`~kvspec.validate.formats` — the reference readers, field by field;
4. :mod:`~kvspec.validate.fast` — msgspec readers into rows, and the contract on rows;
5. :mod:`~kvspec.validate.files` — a file: detection, fast pass with fallback, witness pass.

>>> import io
>>> lines = [
...     '{"worker_id": 1, "event": {"event_id": 0, "data": {"stored": {"parent_hash": null,'
...     ' "blocks": [{"block_hash": 7, "tokens_hash": 1}]}}}}',
...     '{"worker_id": 1, "event": {"event_id": 1, "data": {"removed": {"block_hashes": [7]}}}}',
...     '{"worker_id": 1, "event": {"event_id": 2, "data": {"removed": {"block_hashes": [7]}}}}',
... ]
>>> violation = first_violation(parse_dynamo(io.StringIO("\\n".join(lines))), mode="exact")
>>> violation.kind, violation.index
('removed-not-held', 2)
"""

from __future__ import annotations

from kvspec.validate.contract import Checker, Event, StreamError, Violation, first_violation
from kvspec.validate.fast import check_rows, dynamo_rows, zmq_rows
from kvspec.validate.files import Scan, main, scan, validate_file, witness_of
from kvspec.validate.formats import parse_dynamo, parse_zmq
from kvspec.validate.witness import backward_slice, minimal_witness

__all__ = ["Checker", "Event", "Scan", "StreamError", "Violation", "backward_slice", "check_rows", "dynamo_rows",
           "first_violation", "main", "minimal_witness", "parse_dynamo", "parse_zmq", "scan", "validate_file",
           "witness_of", "zmq_rows"]

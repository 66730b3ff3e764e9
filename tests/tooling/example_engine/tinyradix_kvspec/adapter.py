"""The kvspec adapter of tinyradix: kvspec's ``RadixIndex`` interface over ``tinyradix.BlockIndex``.

Written by following docs/adapters.md, section by section:

* the class name kvspec looks for (``RadixIndex``) and the methods the ``radix`` machine calls,
  with its calling convention (``find_matches(hashes, early_exit=...)``: keyword);
* kvspec's value types for the answers (``kvspec.scores.OverlapScores``,
  ``kvspec.events.RouterEvent``...), never look-alikes;
* kvspec's errors for rejected input (``ParentBlockNotFound``, ``InvalidBlockSequence``,
  ``BlockNotFound``);
* ``__version__`` and ``KVSPEC_MODE``.

Check it:  PYTHONPATH=. kvspec check --target tinyradix_kvspec.adapter --machine radix
"""

import tinyradix
from kvspec.errors import BlockNotFound, InvalidBlockSequence, ParentBlockNotFound
from kvspec.events import Cleared, KvCacheEvent, Removed, RouterEvent, StorageTier, Stored, StoredBlock
from kvspec.scores import OverlapScores

__version__ = tinyradix.__version__
#: tinyradix computes exactly what kvspec's model computes: hold it to exact equality.
KVSPEC_MODE = "exact"


class RadixIndex:
    """kvspec's ``RadixIndex`` interface, delegating to a ``tinyradix.BlockIndex``."""

    def __init__(self):
        self._index = tinyradix.BlockIndex()

    def apply_event(self, worker_id, event):
        data, rank = event.data, event.dp_rank
        try:
            if isinstance(data, Stored):
                self._index.insert(worker_id, rank, data.parent_hash,
                                   [(b.block_hash, b.tokens_hash) for b in data.blocks])
            elif isinstance(data, Removed):
                self._index.evict(worker_id, rank, list(data.block_hashes))
            elif isinstance(data, Cleared):
                self._index.drop(worker_id, rank)
        except tinyradix.CyclicInsert as exc:
            raise InvalidBlockSequence(str(exc)) from exc
        except tinyradix.UnknownParent as exc:
            raise ParentBlockNotFound(str(exc)) from exc
        except tinyradix.MissingBlocks as exc:
            raise BlockNotFound(str(exc)) from exc

    def find_matches(self, local_hashes, *, early_exit=False):
        return OverlapScores(self._index.overlap(list(local_hashes), stop_when_unique=early_exit), ())

    def remove_worker(self, worker_id):
        self._index.drop(worker_id)

    def remove_worker_dp_rank(self, worker_id, dp_rank):
        self._index.drop(worker_id, dp_rank)

    def clear_all_blocks(self, worker_id):
        self._index.drop(worker_id)

    def dump_events(self):
        return [RouterEvent(worker, KvCacheEvent(i, Stored(parent, [StoredBlock(block, tokens)]), rank),
                            StorageTier.DEVICE)
                for i, (worker, rank, parent, block, tokens) in enumerate(self._index.chains())]

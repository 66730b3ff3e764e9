"""The adapter over tinyradix with its planted bug: evicting a block evicts its descendants too."""

import tinyradix
from tinyradix_kvspec import adapter

__version__ = tinyradix.__version__ + "+cascade-evict"
KVSPEC_MODE = "exact"


class RadixIndex(adapter.RadixIndex):
    def __init__(self):
        self._index = tinyradix.BlockIndex(cascade_evict=True)



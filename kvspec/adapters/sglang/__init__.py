"""SGLang 0.5.23 (``kvspec install-engine sglang``): recording its real KV-event stream on CPU.

Only :mod:`.record` exists today: a ``RadixCache`` built with ``create_simulated`` (no model, a
counting allocator, events on), driven by insert / match_prefix / lock / evict, its events
published as SGLang's ZMQ publisher encodes them.  The ``sglang`` *target* (an exact model of the
node-granular leaf-LRU policy) is not built yet; see docs/findings.md.
"""

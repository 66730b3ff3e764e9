"""kvspec adapters for tinyradix: ``tinyradix_kvspec.adapter`` (the engine as shipped) and
``tinyradix_kvspec.buggy`` (the same adapter over the planted-bug engine)."""

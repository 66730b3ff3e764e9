"""kvspec — an executable specification and conformance suite for LLM KV-cache block management
and KV-aware routing indexes.

* :mod:`kvspec.model` — the reference models (the spec);
* :mod:`kvspec.impl` — the optimized implementation of the same interfaces;
* :mod:`kvspec.stateful` — Hypothesis state machines comparing the model with any target;
* shared vocabulary: :mod:`kvspec.hashing`, :mod:`kvspec.protocol`, :mod:`kvspec.events`,
  :mod:`kvspec.errors`, :mod:`kvspec.targets`.
"""

__version__ = "0.1.0"

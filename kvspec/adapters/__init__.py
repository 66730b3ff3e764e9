"""Adapters: third-party engines as kvspec targets, one package per engine.

An adapter is a module whose ``load_target()`` returns a :class:`~kvspec.targets.Target`; it is
registered with **one line** in ``pyproject.toml`` (an entry point in the ``kvspec.targets`` group,
``name = "package.module:load_target"``), so ``kvspec list`` shows the name without importing
anything and the engine is imported only when that target is resolved.  When the engine is not
installed, ``load_target()`` returns a target that provides no class (every machine reports
*skipped*, with the install hint) — see :func:`kvspec.adapters.dynamo.runtime.unavailable_target`.

* :mod:`kvspec.adapters.dynamo` — NVIDIA Dynamo 1.6.x: ``dynamo`` (the Rust radix tree),
  ``dynamo-router`` / ``dynamo-router-threads4`` (a real ``KvRouter`` fed over ZMQ),
  ``dynamo-approx`` (the router's approximate, predict-on-route index), ``dynamo-mocker`` (the
  mocker's trace replay).

``docs/adapters.md`` walks through writing one.
"""

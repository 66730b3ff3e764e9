"""NVIDIA Dynamo 1.6.x (wheel ``ai-dynamo-runtime``, extra ``dynamo``) as kvspec targets.

* :mod:`~kvspec.adapters.dynamo.runtime` — importing the wheel and starting a worker, shared;
* :mod:`~kvspec.adapters.dynamo.radix` — target ``dynamo``: the Rust ``RadixTree``;
* :mod:`~kvspec.adapters.dynamo.router` — targets ``dynamo-router`` and ``dynamo-router-threads4``:
  a real ``KvRouter`` fed by KV events over ZMQ on 127.0.0.1;
* :mod:`~kvspec.adapters.dynamo.mocker` — target ``dynamo-mocker``: the mocker's trace replay.

Importing this package imports no engine.
"""

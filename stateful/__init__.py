"""Hypothesis state machines that drive the reference model and a target side by side.

* :mod:`~kvspec.stateful.differential` — steps, outcomes, comparison, divergences;
* :mod:`~kvspec.stateful.base` — the machine base class and the machine registry;
* :mod:`~kvspec.stateful.check` — running machines (``kvspec check``);
* :mod:`~kvspec.stateful.trace` — failing runs as replayable JSON traces;
* one module per machine family (``pool``, ``manager``, ...), each exposing ``machines()``;
* :mod:`~kvspec.stateful.mutants` — deliberately broken targets that the machines must catch.
"""

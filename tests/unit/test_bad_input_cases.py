"""The hand-written bad-input campaign as tests: every case must be typed + unchanged + alike.

The cases live in :mod:`kvspec.bench.bad_input_campaign` (``kvspec bench bad_input_campaign``
prints the same verdicts as a table).  Each case builds model and impl, runs a valid prefix, makes
one bad call, and requires: a :class:`kvspec.errors.KvSpecError` subclass on both sides, the same
class on both, every public observer unchanged (nothing published), the impl's ``_check()``
passing, and a valid follow-up operation answering alike on both sides.
"""

from collections import Counter

import pytest

from kvspec.bench.bad_input_campaign import BINS, CASES, run_case


def test_campaign_covers_every_public_class_with_enough_cases():
    per_class = Counter(case.cls for case in CASES)
    assert set(per_class) == {"BlockPool", "KvManager", "LegacyKvManager", "RadixIndex", "TieredIndex",
                              "DedupTracker", "PassthroughTracker", "NativeBlockPool"}
    assert len(CASES) >= 731
    assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_call_is_typed_unchanged_and_alike(case):
    bin_, detail, failing = run_case(case)
    assert bin_ == BINS[0], f"{bin_}: {detail} (also: {sorted(failing)})"

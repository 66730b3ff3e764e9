"""The count-min TinyLFU sketch (impl) against :class:`ExactFrequency` (docs/upstream.md P11, tinylfu.rs tests)."""

import random

import pytest

from kvspec.errors import InvalidArgument
from kvspec.frequency import ExactFrequency, NoFrequency, make
from kvspec.hashing import Plh
from kvspec.impl.tinylfu import TinyLfu

# --- ExactFrequency (the reference) --------------------------------------------------------------


def test_exact_counts_and_saturation():
    f = ExactFrequency()
    k = Plh(0, 1)
    assert f.count(k) == 0
    f.touch(k)
    assert f.count(k) == 1
    for _ in range(2):
        f.touch(k)
    assert f.count(k) == 3
    for _ in range(20):
        f.touch(k)
    assert f.count(k) == 15 and f.size == 15  # saturated touches are not counted


def test_exact_decays_at_sample_size_not_before():
    f = ExactFrequency(sample_size=100)
    keys = [Plh(0, i) for i in range(50)]
    for k in keys:
        f.touch(k)
    for k in keys[:49]:
        f.touch(k)
    assert f.size == 99 and f.count(keys[0]) == 2  # 99 < 100: no decay yet
    f.touch(keys[49])
    # decay: all counts were 2 (even), halved to 1; size = 100 // 2 - 0
    assert f.count(keys[0]) == 1 and f.size == 50


def test_exact_manual_decay_halves_and_adjusts_size():
    f = ExactFrequency()
    a, b = Plh(0, 1), Plh(0, 2)
    for _ in range(4):
        f.touch(a)
    for _ in range(3):
        f.touch(b)
    f.decay()
    assert (f.count(a), f.count(b)) == (2, 1)
    assert f.size == 7 // 2 - 1  # one odd counter (b)


def test_make():
    assert make(None) is None
    assert isinstance(make("exact"), ExactFrequency)
    assert make("exact:7").sample_size == 7
    tracker = NoFrequency()
    assert make(tracker) is tracker and tracker.count(1) == 0
    for bad in ("lfu", "exact:x", 3, object()):
        with pytest.raises(InvalidArgument):
            make(bad)


# --- TinyLfu (the sketch) ---------------------------------------------------------------------------


def test_sketch_upstream_unit_cases():
    s = TinyLfu(capacity=1024)
    k = Plh(2, 77, 76)
    assert s.count(k) == 0
    s.touch(k)
    assert s.count(k) == 1
    s.touch(k)
    s.touch(k)
    assert s.count(k) == 3
    for _ in range(20):
        s.touch(k)
    assert s.count(k) <= 15
    s._check()


def test_sketch_decays_at_sample_size():
    s = TinyLfu(capacity=4096, sample_size=100)
    k = Plh(0, 5)
    for _ in range(4):
        s.touch(k)
    others = [Plh(1, i, 5) for i in range(95)]
    for o in others:
        s.touch(o)
    assert s.size == 99 and s.count(k) == 4
    s.touch(others[0])  # the 100th counted increment
    assert s.count(k) == 2  # halved
    s._check()


def test_sketch_from_capacity_sample():
    assert TinyLfu(capacity=10).sample_size == 100


def test_sketch_manual_decay_halves():
    s = TinyLfu(capacity=1024)
    k = Plh(0, 9)
    for _ in range(4):
        s.touch(k)
    s.decay()
    assert s.count(k) == 2


@pytest.mark.parametrize("seed", range(3))
def test_sketch_never_underestimates_without_decay(seed):
    rng = random.Random(seed)
    small = TinyLfu(capacity=64, sample_size=10**9)  # 16 words: collisions certain
    exact = ExactFrequency(sample_size=10**9)
    keys = [Plh(rng.randrange(4), rng.randrange(10**6)) for _ in range(300)]
    for _ in range(3000):
        k = rng.choice(keys)
        small.touch(k)
        exact.touch(k)
    assert all(small.count(k) >= exact.count(k) for k in keys)
    assert any(small.count(k) > exact.count(k) for k in keys)  # collisions do show up


def test_sketch_equals_exact_without_collisions():
    """With a large table and few keys no two keys share all four counters: identical, decay included."""
    rng = random.Random(11)
    sketch = TinyLfu(capacity=2**16, sample_size=60)
    exact = ExactFrequency(sample_size=60)
    keys = [Plh(0, i) for i in range(12)]
    slots = {k: set(sketch._slots(k)) for k in keys}
    shared = [(a, b) for a in keys for b in keys if a != b and slots[a] & slots[b]]
    assert not shared, "test premise: no shared counters"
    for _ in range(500):
        k = rng.choice(keys)
        sketch.touch(k)
        exact.touch(k)
        assert [sketch.count(x) for x in keys] == [exact.count(x) for x in keys]
        assert sketch.size == exact.size

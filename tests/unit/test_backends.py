"""The eviction backends are one table per side, and every backend is checked by machines.

Adding a backend is one class on each side and one entry in each side's ``BACKENDS``; the pool,
manager and pipeline machines, the benchmarks and the unit tests read the table.  These tests fail
when the two tables disagree or when a backend would silently go unchecked.
"""

import kvspec.impl.eviction as impl_eviction
import kvspec.model.eviction as model_eviction
from kvspec.stateful.engine.registry import all_machines

NAMES = sorted(model_eviction.BACKENDS)


def test_model_and_impl_name_the_same_backends():
    assert NAMES == sorted(impl_eviction.BACKENDS)
    assert {"lineage", "lineage_fifo", "lru", "multi_lru", "hashmap"} <= set(NAMES)


def test_every_backend_has_its_machines():
    machines = {spec.name: spec for spec in all_machines()}
    for name in NAMES:
        for duplication in ("allow", "reject"):
            assert machines[f"pool[{name},{duplication}]"].params == {"eviction": name, "duplication": duplication}
        assert machines[f"manager[{name}]"].params["eviction"] == name
    pool_like = [s for s in machines.values() if s.name.startswith(("pool[", "manager["))]
    assert len(pool_like) == 3 * len(NAMES)

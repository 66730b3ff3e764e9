"""Old home of the access-frequency rule; it now sits with the eviction model.

The decay rule and the reference tracker live in :mod:`kvspec.model.frequency` (next to
:mod:`kvspec.model.eviction`, whose MultiLRU backend reads it); the argument rules (``"exact"``,
``"exact:<n>"``, thresholds, the sample size sized from capacity) in :mod:`kvspec.checks`.  This
module re-exports both so that existing imports (``from kvspec.frequency import ExactFrequency``)
keep working.

>>> from kvspec.frequency import ExactFrequency
>>> ExactFrequency(sample_size=10).sample_size
10
"""

from __future__ import annotations

from kvspec.checks import DEFAULT_SKETCH_CAPACITY as DEFAULT_CAPACITY
from kvspec.checks import DEFAULT_THRESHOLDS, MAX_COUNT
from kvspec.checks import sample_size as default_sample_size
from kvspec.checks import thresholds as check_thresholds
from kvspec.model.frequency import ExactFrequency, FrequencyTracker, NoFrequency, make

__all__ = ["DEFAULT_CAPACITY", "DEFAULT_THRESHOLDS", "MAX_COUNT", "ExactFrequency", "FrequencyTracker", "NoFrequency",
           "check_thresholds", "default_sample_size", "make"]

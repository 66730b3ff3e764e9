"""Benchmarks (``kvspec bench NAME``): impl vs model (and vs real engines) on one workload, in one
run, reported as ratios of medians over interleaved, repeated rounds (:mod:`kvspec.bench.measure`).
Never timed assertions."""

#: benchmark name -> what it measures (``kvspec bench --help`` lists these)
BENCHMARKS = {
    "indexing": "RadixIndex: impl vs Dynamo's RadixTree vs model; queries (hit/shared/miss), "
                "apply per event, memory per pair",
    "lifecycle": "KvManager: impl vs model on a recorded request workload; impl time per block "
                 "from 1k to 1M blocks",
}

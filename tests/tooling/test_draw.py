"""Pictures of the state at a divergence: the prefix index and the eviction forest, from real traces."""

from pathlib import Path

from kvspec.events import KvCacheEvent, RouterEvent, StorageTier, Stored, StoredBlock
from kvspec.stateful.traces import draw
from kvspec.stateful.traces.replay import replay_trace

CORPUS = Path(__file__).resolve().parents[1] / "regressions"


def _statuses(graph):
    return sorted(d["status"] for _, d in graph.nodes(data=True) if d["kind"] == "block")


def test_index_graph_marks_reachable_stale_missing_and_extra():
    dev = StorageTier.DEVICE

    def dump(*blocks):
        return [RouterEvent(1, KvCacheEvent(i, Stored(p, [StoredBlock(e, 11)]), 0), dev) for i, (p, e) in enumerate(blocks)]

    held = {(dev, (1, 0)): {1: (None, 11), 2: (1, 11), 3: (9, 11)}}  # 3 sits behind the removed block 9
    graph = draw.index_graph(held, dump((None, 1), (1, 2)), dump((None, 1), (None, 5)))
    assert _statuses(graph) == ["extra", "missing", "reachable", "stale"]
    holes = [d["label"] for _, d in graph.nodes(data=True) if d["kind"] == "hole"]
    assert holes == ["E 9 (removed)"]
    text = draw.mermaid(graph)
    assert text.startswith("flowchart TD") and 'subgraph g0["device: worker 1, rank 0"]' in text
    assert ":::missing" in text and ":::extra" in text and "classDef stale" in text
    assert "digraph kvspec" in draw.dot(graph)


def test_radix_trace_draws_the_stale_block_behind_the_hole():
    result = replay_trace(str(CORPUS / "mutant-radix-cascade-removal.json"))
    [(caption, graph)] = draw.pictures(result)
    assert caption.startswith("before step") and _statuses(graph) == ["stale"]


def test_pool_trace_draws_the_eviction_forest_with_moved_victims():
    result = replay_trace(str(CORPUS / "mutant-lineage-fifo-releaf.json"))
    captions = [caption for caption, _ in draw.pictures(result)]
    assert captions[-1].endswith("the eviction forest")
    after = draw.pictures(result)[-1][1]
    assert _statuses(after) == ["moved", "moved", "victim"]
    labels = sorted(d["label"] for _, d in after.nodes(data=True))
    assert labels[0] == "11 · evicted 3rd by the model, 2nd by the target"
    assert after.number_of_edges() == 1  # 121 hangs under its parent 12


def test_machines_without_state_to_draw_give_no_picture():
    result = replay_trace(str(CORPUS / "mutant-tracker-passthrough-dedups.json"))
    assert draw.pictures(result) == []

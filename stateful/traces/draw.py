"""Pictures of the state at a divergence: the prefix index per worker rank, model against target.

People would rather look than read.  :func:`index_graph` builds a :class:`networkx.DiGraph` of the
blocks the reference model holds at the divergence — per storage tier, worker and rank, a root
and its chains ``parent -> block`` — and marks every block by what the two sides say:

* ``reachable`` — the model holds it on a chain from the root, and the target's dump lists it;
* ``stale`` — the model still holds it, but behind a removed block (a *hole*): it counts for no
  match until the hole is stored again, and no dump lists it;
* ``missing`` — reachable in the model, absent from the target's dump (the target lost it);
* ``extra`` — in the target's dump but not in the model's (the target kept or invented it).

:func:`eviction_graph` draws the other kind of state, a pool's or manager's *eviction forest*:
every inactive block of either side (parent above child for lineage identities), each labelled
with its eviction rank in the model and in the target, the model's next victims highlighted, and
blocks at another rank, missing or extra marked.

:func:`mermaid` renders the graph as a Mermaid flowchart (GitHub renders it inside Markdown) and
:func:`dot` as Graphviz source (``dot -Tpng`` for a local picture).  Only index machines (those
observing ``dump_events``) and eviction machines (``eviction_order``) are drawn; :func:`pictures`
returns nothing for others.

>>> from kvspec.events import KvCacheEvent, RouterEvent, Stored, StoredBlock, StorageTier
>>> dump = [RouterEvent(1, KvCacheEvent(0, Stored(None, [StoredBlock(11, 11)]), 0), StorageTier.DEVICE)]
>>> g = index_graph({(StorageTier.DEVICE, (1, 0)): {11: (None, 11), 1111: (11, 11)}}, dump, dump)
>>> sorted(data["status"] for _, data in g.nodes(data=True) if "status" in data)
['reachable', 'stale']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx

from kvspec.events import RouterEvent, StorageTier, Stored

__all__ = ["NEXT_VICTIMS", "STATUSES", "dot", "eviction_graph", "index_graph", "legend", "mermaid", "model_blocks", "pictures", "state_graph"]

#: status -> (Mermaid style, Graphviz attributes, legend text)
STATUSES = {
    "reachable": ("fill:#d9f2d9,stroke:#2e7d32", 'style=filled fillcolor="#d9f2d9" color="#2e7d32"',
                  "held and reachable from the root (both sides agree)"),
    "stale": ("fill:#eeeeee,stroke:#9e9e9e,stroke-dasharray:4 3,color:#757575",
              'style="filled,dashed" fillcolor="#eeeeee" color="#9e9e9e" fontcolor="#757575"',
              "held by the model behind a hole: counts for no match"),
    "missing": ("fill:#ffd6d6,stroke:#c62828,stroke-width:3px", 'style=filled fillcolor="#ffd6d6" color="#c62828" penwidth=3',
                "reachable in the model, missing from the target's dump"),
    "extra": ("fill:#ffe2b3,stroke:#ef6c00,stroke-width:3px", 'style=filled fillcolor="#ffe2b3" color="#ef6c00" penwidth=3',
              "in the target's dump, not in the model's"),
    "victim": ("fill:#fff3b0,stroke:#b28704,stroke-width:3px", 'style=filled fillcolor="#fff3b0" color="#b28704" penwidth=3',
               "inactive, among the model's next victims, at the same rank in the target"),
    "inactive": ("fill:#e3f2fd,stroke:#1565c0", 'style=filled fillcolor="#e3f2fd" color="#1565c0"',
                 "inactive (evictable), at the same rank on both sides"),
    "moved": ("fill:#ffd6d6,stroke:#c62828,stroke-width:3px", 'style=filled fillcolor="#ffd6d6" color="#c62828" penwidth=3',
              "inactive on both sides, at another eviction rank in the target"),
    "not-inactive": ("fill:#ffd6d6,stroke:#c62828,stroke-width:3px,stroke-dasharray:4 3",
                     'style="filled,dashed" fillcolor="#ffd6d6" color="#c62828" penwidth=3',
                     "evictable in the model, not in the target's eviction order"),
    "wrongly-inactive": ("fill:#ffe2b3,stroke:#ef6c00,stroke-width:3px", 'style=filled fillcolor="#ffe2b3" color="#ef6c00" penwidth=3',
                         "in the target's eviction order, not evictable in the model"),
}

#: how many of the model's next victims are highlighted
NEXT_VICTIMS = 3

Key = tuple[StorageTier, tuple[int, int]]


def model_blocks(model: Any) -> dict[Key, dict[int, tuple[int | None, int]]]:
    """Every block the reference model's index holds: ``(tier, (worker, rank)) -> {E: (parent, L)}``.

    Reads the model's state (``kvspec.model.radix``/``tiered``), including blocks behind a hole,
    which no dump shows.  Empty for other objects.
    """
    out: dict[Key, dict[int, tuple[int | None, int]]] = {}
    device = getattr(model, "_device", model)
    for worker, blocks in getattr(device, "_held", {}).items():
        out[(StorageTier.DEVICE, worker)] = dict(blocks)
    for tier, workers in getattr(model, "_lower", {}).items():
        for worker, blocks in workers.items():
            out[(StorageTier(tier), worker)] = dict(blocks)
    return out


def _dump_blocks(events: Any) -> set[tuple]:
    """``(tier, worker, rank, parent, E, L)`` of every block a dump lists (non-events are ignored)."""
    out = set()
    for item in events if isinstance(events, (list, tuple)) else ():
        if not isinstance(item, RouterEvent) or not isinstance(item.event.data, Stored):
            continue
        parent = item.event.data.parent_hash
        for block in item.event.data.blocks:
            out.add((StorageTier(item.storage_tier), item.worker_id, item.event.dp_rank, parent, block.block_hash,
                     block.tokens_hash))
            parent = block.block_hash
    return out


def index_graph(held: Mapping[Key, Mapping[int, tuple[int | None, int]]], model_dump: Any,
                target_dump: Any) -> nx.DiGraph:
    """The graph of the module docstring: a root node per tier and worker rank, a node per block.

    Node attributes: ``kind`` (``root`` or ``block``), ``label``, ``group`` (the tier and worker
    rank) and, for blocks, ``status``.
    """
    graph = nx.DiGraph()
    model_listed, target_listed = _dump_blocks(model_dump), _dump_blocks(target_dump)
    groups: dict[Key, dict[int, tuple[int | None, int]]] = {k: dict(v) for k, v in held.items()}
    for tier, worker_id, rank, parent, e, local in target_listed - model_listed:
        groups.setdefault((tier, (worker_id, rank)), {})
    for (tier, worker), blocks in sorted(groups.items(), key=lambda kv: (kv[0][0].value, kv[0][1])):
        group = f"{tier.value}: worker {worker[0]}, rank {worker[1]}"
        root = ("root", tier.value, worker)
        graph.add_node(root, kind="root", label="root", group=group)
        listed = {(p, e, l) for t, w, r, p, e, l in model_listed if (t, (w, r)) == (tier, worker)}
        theirs = {(p, e, l) for t, w, r, p, e, l in target_listed if (t, (w, r)) == (tier, worker)}
        for e, (parent, local) in sorted(blocks.items()):
            node = ("block", tier.value, worker, e)
            if (parent, e, local) in listed:
                status = "reachable" if (parent, e, local) in theirs else "missing"
            else:
                status = "stale"
            graph.add_node(node, kind="block", label=f"E {e} · L {local}", group=group, status=status)
        for parent, e, local in sorted(theirs - listed, key=repr):
            node = ("extra", tier.value, worker, e, parent)
            graph.add_node(node, kind="block", label=f"E {e} · L {local}", group=group, status="extra")
            blocks = {**blocks, e: (parent, local)}
            source = ("block", tier.value, worker, parent) if parent is not None else root
            graph.add_edge(source if source in graph else root, node)
        for e, (parent, _) in sorted(blocks.items()):
            node = ("block", tier.value, worker, e)
            if node not in graph:
                continue
            source = root if parent is None else ("block", tier.value, worker, parent)
            if source not in graph:  # the parent itself was removed: draw the hole
                source = ("hole", tier.value, worker, parent)
                graph.add_node(source, kind="hole", label=f"E {parent} (removed)", group=group)
                graph.add_edge(root, source)
            graph.add_edge(source, node)
    return graph


def _ids(graph: nx.DiGraph) -> dict[Any, str]:
    return {node: f"n{i}" for i, node in enumerate(graph.nodes)}


def mermaid(graph: nx.DiGraph, title: str = "") -> str:
    """A Mermaid ``flowchart`` of ``graph``: one subgraph per tier and worker rank, styled by status."""
    ids = _ids(graph)
    lines = ["flowchart TD"]
    groups: dict[str, list[Any]] = {}
    for node, data in graph.nodes(data=True):
        groups.setdefault(data["group"], []).append(node)
    for g, (group, nodes) in enumerate(groups.items()):
        lines.append(f'  subgraph g{g}["{group}"]')
        for node in nodes:
            data = graph.nodes[node]
            if data["kind"] == "root":
                lines.append(f'    {ids[node]}(("root"))')
            elif data["kind"] == "hole":
                lines.append(f'    {ids[node]}["{data["label"]}"]:::hole')
            else:
                lines.append(f'    {ids[node]}["{data["label"]}"]:::{_css(data["status"])}')
        lines.append("  end")
    for a, b in graph.edges:
        dashed = graph.nodes[b].get("status") in ("stale",) or graph.nodes[a]["kind"] == "hole"
        lines.append(f"  {ids[a]} {'-.->' if dashed else '-->'} {ids[b]}")
    used = {data.get("status") for _, data in graph.nodes(data=True)}
    for status, (style, _, _) in STATUSES.items():
        if status in used:
            lines.append(f"  classDef {_css(status)} {style}")
    lines.append("  classDef hole fill:#ffffff,stroke:#9e9e9e,stroke-dasharray:2 2,color:#9e9e9e")
    return "\n".join(lines)


def _css(status: str) -> str:
    return status.replace("-", "_")


def dot(graph: nx.DiGraph, title: str = "") -> str:
    """Graphviz source of ``graph`` (``dot -Tpng file.dot -o file.png``)."""
    ids = _ids(graph)
    lines = ["digraph kvspec {", "  rankdir=TB; node [shape=box fontname=Helvetica fontsize=11];"]
    if title:
        lines.append(f'  label="{_dot_escape(title)}"; labelloc=t;')
    groups: dict[str, list[Any]] = {}
    for node, data in graph.nodes(data=True):
        groups.setdefault(data["group"], []).append(node)
    for g, (group, nodes) in enumerate(groups.items()):
        lines.append(f'  subgraph cluster_{g} {{ label="{_dot_escape(group)}"; color="#bbbbbb";')
        for node in nodes:
            data = graph.nodes[node]
            if data["kind"] == "root":
                lines.append(f'    {ids[node]} [label="root" shape=circle];')
            elif data["kind"] == "hole":
                lines.append(f'    {ids[node]} [label="{_dot_escape(data["label"])}" style=dashed color="#9e9e9e"];')
            else:
                attrs_ = STATUSES[data["status"]][1]
                lines.append(f'    {ids[node]} [label="{_dot_escape(data["label"])}" {attrs_}];')
        lines.append("  }")
    for a, b in graph.edges:
        style = " [style=dashed]" if graph.nodes[b].get("status") == "stale" else ""
        lines.append(f"  {ids[a]} -> {ids[b]}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"')


def legend(graph: nx.DiGraph) -> list[str]:
    """One line per status the graph uses."""
    used = {data.get("status") for _, data in graph.nodes(data=True)}
    return [f"- **{status}**: {text}" for status, (_, _, text) in STATUSES.items() if status in used]


def eviction_graph(model_order: Any, target_order: Any) -> nx.DiGraph:
    """The eviction forest: every inactive block of either side, parent above child (when the
    items are :class:`~kvspec.hashing.Plh` identities), labelled with its eviction rank on each
    side (``#1`` is the next victim) and marked by status (see :data:`STATUSES`).

    >>> from kvspec.hashing import Plh
    >>> g = eviction_graph([Plh(0, 11), Plh(1, 12, 11)], [Plh(1, 12, 11), Plh(0, 11)])
    >>> sorted(d["status"] for _, d in g.nodes(data=True) if d["kind"] == "block")
    ['moved', 'moved']
    """
    from kvspec.hashing import Plh

    model_order = list(model_order) if isinstance(model_order, (list, tuple)) else []
    target_order = list(target_order) if isinstance(target_order, (list, tuple)) else []
    graph = nx.DiGraph()
    group = "eviction order (inactive blocks)"
    rank_model = {item: i + 1 for i, item in enumerate(model_order)}
    rank_target = {item: i + 1 for i, item in enumerate(target_order)}
    items = list(dict.fromkeys([*model_order, *target_order]))
    name = {item: (item.current if isinstance(item, Plh) else item) for item in items}
    for item in items:
        m, t = rank_model.get(item), rank_target.get(item)
        if m is None:
            status = "wrongly-inactive"
        elif t is None:
            status = "not-inactive"
        elif m != t:
            status = "moved"
        else:
            status = "victim" if m <= NEXT_VICTIMS else "inactive"
        label = f"{name[item]} · evicted {_nth(m)} by the model, {_nth(t)} by the target"
        graph.add_node(("block", item), kind="block", label=label, group=group, status=status)
    by_name = {name[item]: item for item in items}
    for item in items:
        parent = getattr(item, "parent", None)
        if parent is not None and parent in by_name:
            graph.add_edge(("block", by_name[parent]), ("block", item))
        elif isinstance(item, Plh) and parent is not None:
            hole = ("hole", parent)
            if hole not in graph:
                graph.add_node(hole, kind="hole", label=f"{parent} (active or gone)", group=group)
            graph.add_edge(hole, ("block", item))
    return graph


def _nth(rank: int | None) -> str:
    if rank is None:
        return "never"
    suffix = "th" if 10 <= rank % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(rank % 10, "th")
    return f"{rank}{suffix}"


def state_graph(prepared: Any, steps: list, upto: int, model_dump: Any, target_dump: Any) -> nx.DiGraph:
    """The graph after ``steps[: upto + 1]``: the model's blocks (the steps applied again to a fresh
    model; errors both sides agreed on are skipped, as in replay) against the two observed dumps."""
    from kvspec.errors import KvSpecError

    namespace = prepared.machine.model_namespace
    objects: dict[str, Any] = {}
    for s in steps[: upto + 1]:
        try:
            if s.is_create:
                objects[s.subject] = getattr(namespace, s.cls)(*s.args, **s.kwargs)
            else:
                getattr(objects[s.subject], s.method)(*s.args, **s.kwargs)
        except KvSpecError:
            continue
    held = model_blocks(objects.get(steps[upto].subject))
    return index_graph(held, model_dump or [], target_dump if target_dump is not None else [])


def pictures(result: Any) -> list[tuple[str, nx.DiGraph]]:
    """``(caption, graph)`` for a replayed divergence of an index machine: the state before the
    failing step (what it acted on) and after it (where the sides disagree); empty for machines
    without a ``dump_events`` observer, or without a divergence."""
    d = getattr(result, "divergence", None)
    if d is None:
        return []
    if "dump_events" not in d.expected.observed and "dump_events" not in d.actual.observed:
        out = []
        if d.index > 0 and d.index - 1 < len(result.records):
            before = result.records[d.index - 1]
            if "eviction_order" in before.expected.observed:
                graph = eviction_graph(before.expected.observed.get("eviction_order"),
                                       before.actual.observed.get("eviction_order"))
                if graph.number_of_nodes():
                    out.append((f"before step {d.index + 1}: the eviction forest", graph))
        if "eviction_order" in d.expected.observed:
            graph = eviction_graph(d.expected.observed.get("eviction_order"), d.actual.observed.get("eviction_order"))
            if graph.number_of_nodes():
                out.append((f"after step {d.index + 1} (the divergence): the eviction forest", graph))
        return out
    steps = list(result.prepared.trace.steps)
    out = []
    records = result.records
    if d.index > 0 and d.index - 1 < len(records):
        before = records[d.index - 1]
        if "dump_events" in before.expected.observed:
            graph = state_graph(result.prepared, steps, d.index - 1, before.expected.observed.get("dump_events"),
                                before.actual.observed.get("dump_events"))
            if any(data["kind"] != "root" for _, data in graph.nodes(data=True)):
                out.append((f"before step {d.index + 1}", graph))
    graph = state_graph(result.prepared, steps, d.index, d.expected.observed.get("dump_events"),
                        d.actual.observed.get("dump_events"))
    if any(data["kind"] != "root" for _, data in graph.nodes(data=True)):
        out.append((f"after step {d.index + 1} (the divergence)", graph))
    return out

"""What a diagram draws: its boxes, clusters and edges (no graphviz, no torch).

``build_model`` runs small steps over one ``Layout`` (which box each layer is drawn in):
place every layer at the requested depth, drop pass-through layers, fuse a conv with its norm
and activation, fold identical blocks, then make the boxes, the clusters around them, the
edges between them, and stretch skip edges beside the path they bypass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...analysis import Analysis
from ...errors import ArchspecError
from ...graph import skip_inputs
from ...ir import INPUT, Block
from ...layers.base import fmt_shape
from ..report import human
from .folding import fold_runs
from .lowering import FAMILY_COLOURS, LOWERING

# Block kinds that only group the paths of their parent (an inception's branches, a residual's
# shortcut): they open and close with their parent and do not count as a depth level.
TRANSPARENT = frozenset({"branch", "shortcut"})


class RenderError(ArchspecError):
    """The picture could not be made (no ``dot``, dot failed, bad option); nothing was written."""

    def __init__(self, message: str, hint: str | None = None):
        Exception.__init__(self, f"{message}; {hint}" if hint else message)
        self.message, self.hint = message, hint


@dataclass
class Box:
    id: str                       # DOT node id: a layer name, a block name, or 'first..last'
    kind: str                     # 'input', 'layer', 'block' (collapsed) or 'fold'
    lines: list[tuple[str, str]]  # (style, text): style is 'head', 'name', 'shape' or 'params'
    family: str | None = None     # layer family for 'input'/'layer'
    cluster: str | None = None    # innermost open block holding the box
    tooltip: str = ""
    output: bool = False          # produces a network output
    count: int = 1                # for 'fold': how many blocks it stands for
    shape: str = "box"            # graphviz node shape, from the lowering table


@dataclass
class Cluster:
    name: str                     # the block's full name
    label: str
    parent: str | None
    level: int
    transparent: bool = False


@dataclass
class Edge:
    src: str
    dst: str
    skip: bool = False
    label: str | None = None
    minlen: int = 1               # ranks between src and dst (set for skips by place_skips)
    tight: bool = False           # leaves a box on a skip path: kept short, by the merge


@dataclass
class DiagramModel:
    name: str
    summary: str                  # 'input 3x32x32 -> output 10 | 30,922 params | 14.37 M MACs'
    boxes: dict[str, Box]
    clusters: dict[str, Cluster]
    edges: list[Edge]
    families: list[str] = field(default_factory=list)   # families drawn, in FAMILY_COLOURS order

    @property
    def has_skips(self) -> bool:
        return any(e.skip for e in self.edges)

    @property
    def has_blocks(self) -> bool:
        return any(b.kind in ("block", "fold") for b in self.boxes.values())


def count_text(n: int) -> str:
    return f"{n:,}" if n < 1_000_000 else human(n)


def block_title(block: Block) -> str:
    """What a block is: its user block name when inlined, else its kind ('separable conv')."""
    return (block.title or block.kind).replace("_", " ")


class View:
    """The network's blocks seen at one depth: which are open (clusters) and which collapsed."""

    def __init__(self, analysis: Analysis, depth: int | None):
        self.analysis = analysis
        self.net = analysis.network
        self.blocks = self.net.blocks
        self.depth = depth
        self.level: dict[str, int] = {}
        self.children: dict[str | None, list[str]] = {}
        for name, block in self.blocks.items():  # parents are created before their children
            base = self.level.get(block.parent, 0) if block.parent else 0
            self.level[name] = base + (0 if block.kind in TRANSPARENT else 1)
            self.children.setdefault(block.parent, []).append(name)
        self.sizes: dict[str, int] = {}  # analysed layers per block, counted once (not per layer)

    def is_open(self, block: str) -> bool:
        return self.depth is None or self.level[block] <= self.depth

    def chain(self, node: str) -> list[str]:
        """Enclosing blocks of a node, outermost first."""
        scope = self.net.nodes[node].scope
        return [n for n in (".".join(scope[:i]) for i in range(1, len(scope) + 1))
                if n in self.blocks]

    def size(self, block: str) -> int:
        if block not in self.sizes:
            self.sizes[block] = sum(1 for m in self.blocks[block].members
                                    if m in self.analysis.layers)
        return self.sizes[block]

    def place(self, node: str) -> tuple[str, str | None, bool]:
        """(box id, cluster, collapsed) for a layer at this depth."""
        cluster = None
        for block in self.chain(node):
            if not self.is_open(block):
                if self.size(block) > 1:
                    return block, cluster, True
                return node, cluster, False  # a one-layer block shows the layer itself
            cluster = block
        return node, cluster, False

    def solid(self, cluster: str | None) -> str | None:
        """The nearest enclosing cluster that is drawn with a border."""
        while cluster is not None and self.blocks[cluster].kind in TRANSPARENT:
            cluster = self.blocks[cluster].parent
        return cluster

    def holds(self, outer: str | None, inner: str | None) -> bool:
        """Whether cluster `outer` is `inner` or encloses it (None, the page, holds all)."""
        while inner is not None and inner != outer:
            inner = self.blocks[inner].parent
        return inner == outer


@dataclass
class Layout:
    """Which box each layer is drawn in; the steps of build_model refine it in turn."""
    place: dict[str, str]                  # layer -> box id
    cluster_of: dict[str, str | None]      # box id -> innermost open block around it
    order: list[str]                       # box ids in first-seen (topological) order
    collapsed: set[str] = field(default_factory=set)       # box ids that are closed blocks
    elided: set[str] = field(default_factory=set)          # pass-through layers, drawn as edges
    fused: dict[str, list[str]] = field(default_factory=dict)   # conv box -> layers it took in
    folds: dict[str, list[str]] = field(default_factory=dict)   # fold box -> its blocks


def place_layers(view: View) -> Layout:
    """Step 1: each analysed layer's box, its own or that of the closed block around it."""
    layout = Layout({INPUT: INPUT}, {INPUT: None}, [INPUT])
    for name in view.analysis.layers:
        box, cluster, collapsed = view.place(name)
        layout.place[name] = box
        if box not in layout.cluster_of:
            layout.cluster_of[box] = cluster
            layout.order.append(box)
            if collapsed:
                layout.collapsed.add(box)
    return layout


def elide_identities(layout: Layout, analysis: Analysis) -> None:
    """Step 2: a layer that passes its input through (a projection shortcut that was not
    needed) is drawn as a plain edge."""
    layout.elided = {n for n, info in analysis.layers.items()
                     if info.identity and layout.place[n] == n}
    layout.order = [b for b in layout.order if b not in layout.elided]


def fuse_layers(layout: Layout, view: View) -> None:
    """Step 3 (--fuse): a conv or dense box takes in the norms and activations that follow it
    in a chain (each read only by the next, in the same cluster, not a network output)."""
    net, layers = view.net, view.analysis.layers
    readers: dict[str, list[str]] = {}
    for name in layers:
        for src in net.nodes[name].inputs:
            readers.setdefault(src, []).append(name)
    outputs = set(net.outputs)
    for head in list(layout.order):
        if head not in layers or layout.place[head] != head or \
                not LOWERING[layers[head].type].absorbs:
            continue
        taken, last = [], head
        while last not in outputs and len(readers.get(last, ())) == 1:
            follower = readers[last][0]
            if layout.place.get(follower) != follower or follower in layout.elided or \
                    net.nodes[follower].inputs != [last] or \
                    layout.cluster_of[follower] != layout.cluster_of[head] or \
                    LOWERING[layers[follower].type].fused is None:
                break
            taken.append(follower)
            last = follower
        if taken:
            layout.fused[head] = taken
            for follower in taken:
                layout.place[follower] = head
    absorbed = {f for taken in layout.fused.values() for f in taken}
    layout.order = [b for b in layout.order if b not in absorbed]


def fold_blocks(layout: Layout, view: View) -> None:
    """Step 4: runs of identical chained collapsed sibling blocks become one 'x N' box."""
    layout.folds = fold_runs(view, layout.order, layout.cluster_of, layout.collapsed)
    for fid, run in layout.folds.items():
        for block in run:
            for member in view.blocks[block].members:
                if member in layout.place:
                    layout.place[member] = fid
        layout.cluster_of[fid] = layout.cluster_of[run[0]]
    first = {run[0]: fid for fid, run in layout.folds.items()}
    folded = {b for run in layout.folds.values() for b in run}
    layout.order = [first.get(b, b) for b in layout.order if b in first or b not in folded]


def make_boxes(layout: Layout, view: View, params: bool) -> dict[str, Box]:
    """Step 5: the box of every box id, with its text lines."""
    analysis, net = view.analysis, view.net
    outputs = {layout.place[o] for o in net.outputs if o in layout.place}
    boxes: dict[str, Box] = {}
    for box_id in layout.order:
        if box_id == INPUT:
            box = Box(INPUT, "input", [("head", "input"), ("shape", fmt_shape(net.input_shape))],
                      family="input", tooltip="network input")
        elif box_id in layout.folds:
            box = fold_box(view, box_id, layout.folds[box_id])
        elif box_id in layout.collapsed:
            box = block_box(view, view.blocks[box_id])
        else:
            box = layer_box(analysis, box_id, layout.fused.get(box_id, []), params)
        box.cluster = layout.cluster_of[box_id]
        box.output = box_id in outputs
        boxes[box_id] = box
    return boxes


def layer_box(analysis: Analysis, name: str, fused: list[str], params: bool) -> Box:
    """One layer's box; with --fuse also the norms and activations it took in."""
    info = analysis.layers[name]
    infos = [info] + [analysis.layers[f] for f in fused]
    head = " + ".join([info.label] + [LOWERING[i.type].fused for i in infos[1:]])
    lines = [("head", head), ("shape", fmt_shape(infos[-1].output_shape))]
    total = sum(i.params for i in infos)
    if params and total:
        lines.append(("params", f"{count_text(total)} params"))
    tooltip = ", ".join(f"{i.name} ({i.type})" for i in infos)
    return Box(name, "layer", lines, family=info.family, tooltip=tooltip,
               shape=LOWERING[info.type].shape)


def _total_params(analysis: Analysis, blocks: list[Block]) -> int:
    return sum(analysis.layers[m].params for b in blocks for m in b.members
               if m in analysis.layers)


def _block_lines(view: View, head: str, name: str, blocks: list[Block]) -> list[tuple[str, str]]:
    layers = view.analysis.layers
    lines = [("head", head), ("name", name)]
    if blocks[-1].output in layers:
        lines.append(("shape", fmt_shape(layers[blocks[-1].output].output_shape)))
    lines.append(("params", f"{count_text(_total_params(view.analysis, blocks))} params"))
    return lines


def block_box(view: View, block: Block) -> Box:
    """A closed block: what it is, its name, its output shape and its parameters."""
    head = block_title(block)
    copies = [view.blocks[c] for c in view.children.get(block.name, [])]
    if block.kind == "repeat" and copies:
        titles = {block_title(c) for c in copies}
        one = titles.pop() if len(titles) == 1 else "sequential"
        head = f"{one if one != 'sequential' else 'repeat'} x {len(copies)}"
    kind = block.kind.replace("_", " ")
    name = f"{block.name} ({kind})" if block.title and kind != head else block.name
    return Box(block.name, "block", _block_lines(view, head, name, [block]),
               tooltip=f"{block.name}: {block.kind}, {view.size(block.name)} layers")


def fold_box(view: View, fid: str, run: list[str]) -> Box:
    """Identical blocks in a row: the first one's title 'x N', and their first and last names."""
    blocks = [view.blocks[b] for b in run]
    lines = _block_lines(view, f"{block_title(blocks[0])} x {len(run)}",
                         f"{run[0]} \u2013 {run[-1]}", blocks)
    shown = ", ".join(run) if len(run) <= 8 else f"{', '.join(run[:3])}, \u2026, {run[-1]}"
    return Box(fid, "fold", lines, tooltip=f"{len(run)} identical blocks: {shown}",
               count=len(run))


def make_clusters(boxes: dict[str, Box], view: View) -> dict[str, Cluster]:
    """Step 6: every open block that holds a box, with its open ancestors, in definition order."""
    clusters: dict[str, Cluster] = {}
    for box in boxes.values():
        name = box.cluster
        while name is not None and name not in clusters:
            block = view.blocks[name]
            clusters[name] = Cluster(name, cluster_label(view, block), block.parent,
                                     view.level[name], block.kind in TRANSPARENT)
            name = block.parent
    return {n: clusters[n] for n in view.blocks if n in clusters}


def cluster_label(view: View, block: Block) -> str:
    if block.kind in TRANSPARENT:
        return ""
    if block.kind == "repeat":
        copies = view.children.get(block.name, [])
        return f"{block.name}  \u00b7  repeat x {len(copies)}" if copies else block.name
    if block.kind == "sequential" and not block.title:
        return block.name
    return f"{block.name}  \u00b7  {block_title(block)}"


def make_edges(layout: Layout, view: View, boxes: dict[str, Box], *, edge_labels: bool,
               edge_shapes: bool) -> list[Edge]:
    """Step 7: one edge per pair of boxes that a value flows between (shape-only inputs are not
    drawn). A skip connection is its own edge; a skip into a closed block stays inside it.
    Shapes label every edge with edge_shapes, else (edge_labels) one edge leaving a cluster
    per source box."""
    net, layers, place = view.net, view.analysis.layers, layout.place
    skips = skip_inputs(net)
    edges: list[Edge] = []
    seen: set[tuple[str, str, bool]] = set()
    labelled: set[str] = set()
    for name in layers:
        if name in layout.elided:
            continue
        dst = place[name]
        for index, src_name in enumerate(net.nodes[name].data_inputs):
            if src_name not in place:
                continue
            origin, via_identity = src_name, False
            while origin in layout.elided:
                origin, via_identity = net.nodes[origin].data_inputs[0], True
            src = place[origin]
            skip = (via_identity or index in skips.get(name, ())) and \
                boxes[dst].kind not in ("block", "fold")
            if src == dst or (src, dst, skip) in seen:
                continue
            seen.add((src, dst, skip))
            shape = net.input_shape if origin == INPUT else layers[origin].output_shape
            if edge_shapes or (edge_labels and not skip and src not in labelled and
                               _leaves_cluster(layout, view, src, dst)):
                labelled.add(src)
                edges.append(Edge(src, dst, skip, fmt_shape(shape)))
            else:
                edges.append(Edge(src, dst, skip))
    return edges


def _leaves_cluster(layout: Layout, view: View, src: str, dst: str) -> bool:
    """True when an edge leaves a framed cluster (src's cluster does not also hold dst)."""
    outer = view.solid(layout.cluster_of[src])
    return outer is not None and not view.holds(outer, view.solid(layout.cluster_of[dst]))


def place_skips(order: list[str], edges: list[Edge]) -> None:
    """Step 8: give skip edges the length of the path they bypass.

    Boxes fed only by a skip (a projection shortcut, a downsampling conv and its norm) would
    otherwise sit right below the block's input, beside the body's first layers; stretched
    this way they sit just before the merge they feed, and the skip runs down beside the body."""
    preds: dict[str, list[str]] = {b: [] for b in order}
    succs: dict[str, list[str]] = {b: [] for b in order}
    for e in edges:
        if not e.skip:
            preds[e.dst].append(e.src)
            succs[e.src].append(e.dst)
    index = {b: i for i, b in enumerate(order)}
    if any(index[e.src] >= index[e.dst] for e in edges):
        return  # boxes are not in topological order (a collapsed block read late): leave it
    rank: dict[str, int] = {}
    for b in order:
        rank[b] = max((rank[p] + 1 for p in preds[b]), default=0)
    fed_by_skip = {e.dst for e in edges if e.skip}
    on_skip: set[str] = set()   # fed by a skip only, directly or through such boxes
    for b in order:
        if (b in fed_by_skip and not preds[b]) or (preds[b] and set(preds[b]) <= on_skip):
            on_skip.add(b)
    for b in reversed(order):  # pull them down, next to the merge they feed
        if b in on_skip and succs[b]:
            rank[b] = min(rank[s] for s in succs[b]) - 1
    for e in edges:
        if e.skip:
            e.minlen = max(1, rank[e.dst] - rank[e.src])
        elif e.src in on_skip:
            e.tight = True


def summary_text(analysis: Analysis) -> str:
    outs = ", ".join(fmt_shape(s) for s in analysis.output_shapes)
    return (f"input {fmt_shape(analysis.input_shape)} \u2192 output {outs}  \u00b7  "
            f"{count_text(analysis.params)} params  \u00b7  {human(analysis.macs)} MACs")


def build_model(analysis: Analysis, *, depth: int | None = None, fold: bool = True,
                fuse: bool = False, params: bool = False, edge_labels: bool = True,
                edge_shapes: bool = False, title: str | None = None) -> DiagramModel:
    """The boxes, clusters and edges of a diagram.

    depth: None opens every block (one box per layer); 0 draws each top-level block as one
    box; 1 opens top-level blocks as clusters and collapses their sub-blocks; and so on.
    fold: draw consecutive identical collapsed blocks as one box marked 'x N'.
    fuse: one box per conv (or dense) with the norm and activation after it.
    params: add each layer's parameter count (collapsed blocks always show theirs).
    edge_labels: the shape on one edge leaving each cluster; edge_shapes: on every edge."""
    if depth is not None and depth < 0:
        raise RenderError(f"depth must be 0 or more, got {depth}")
    view = View(analysis, depth)
    layout = place_layers(view)
    elide_identities(layout, analysis)
    if fuse:
        fuse_layers(layout, view)
    if fold:
        fold_blocks(layout, view)
    boxes = make_boxes(layout, view, params)
    edges = make_edges(layout, view, boxes, edge_labels=edge_labels, edge_shapes=edge_shapes)
    place_skips(list(boxes), edges)
    families = {b.family for b in boxes.values() if b.family}
    return DiagramModel(title or analysis.name, summary_text(analysis), boxes,
                        make_clusters(boxes, view), edges,
                        [f for f in FAMILY_COLOURS if f in families])

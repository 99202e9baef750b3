"""Block diagrams of an analysed network, drawn by graphviz's ``dot`` (no torch).

Three steps, each usable alone:

    model = build_model(analysis, depth=1)   # which boxes, clusters and edges to draw
    source = to_dot(model, rankdir="LR")     # DOT text (no graphviz needed)
    svg = run_dot(source, "svg")             # the picture, from the ``dot`` program

``render`` chains them and writes the file atomically. The ``dot`` program is looked up as the
``dot`` argument, else the ARCHSPEC_DOT environment variable, else ``dot`` on the PATH.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis import Analysis
from ..errors import ArchspecError
from ..ir import INPUT, Block
from ..layers.base import fmt_shape
from .report import human

FORMATS = ("svg", "png", "pdf", "dot")
SUFFIXES = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}
RANKDIRS = ("TB", "LR", "BT", "RL")

# Block kinds that only group the paths of their parent (an inception's branches, a residual's
# shortcut): they open and close with their parent and do not count as a depth level.
TRANSPARENT = frozenset({"branch", "shortcut"})

# Fill colour per LayerKind.family (pastel, readable with black text, distinct in grey print
# thanks to differing lightness).
FAMILY_COLOURS = {
    "input": "#e9ecef",
    "conv": "#a5d8ff",
    "pool": "#ffd8a8",
    "dense": "#b2f2bb",
    "norm": "#fff3bf",
    "activation": "#ffc9c9",
    "dropout": "#dee2e6",
    "reshape": "#d0bfff",
    "merge": "#fcc2d7",
    "upsample": "#99e9f2",
}
BLOCK_FILL = "#f1f3f5"          # a collapsed block
BLOCK_BORDER = "#495057"
CLUSTER_FILLS = ("#f8f9fa", "#eef1f4", "#e3e7eb", "#d8dde2")  # by nesting level
SKIP_COLOUR = "#e8590c"
EDGE_COLOUR = "#495057"
FONT = "Helvetica"
INSTALL_HINT = ("install graphviz ('apt-get install graphviz' on Debian/Ubuntu, "
                "'dnf install graphviz' on Fedora, 'brew install graphviz' on macOS, "
                "'conda install graphviz' or 'choco install graphviz' on Windows), "
                "or set ARCHSPEC_DOT to the dot program's path; "
                "the dot format (DOT source) needs no graphviz")


class RenderError(ArchspecError):
    """The picture could not be made (no ``dot``, dot failed, bad option); nothing was written."""

    def __init__(self, message: str, hint: str | None = None):
        Exception.__init__(self, f"{message}; {hint}" if hint else message)
        self.message, self.hint = message, hint


# ---- the model: what to draw ------------------------------------------------------------------

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
    minlen: int = 1               # ranks between src and dst (set for skips by _place_skips)


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


class _View:
    """Decides, for one depth, which box each layer belongs to and which blocks are clusters."""

    def __init__(self, analysis: Analysis, depth: int | None):
        self.analysis = analysis
        self.net = analysis.network
        self.layers = analysis.layers
        self.blocks = self.net.blocks
        self.level: dict[str, int] = {}
        for name, block in self.blocks.items():  # parents are created before their children
            base = self.level.get(block.parent, 0) if block.parent else 0
            self.level[name] = base + (0 if block.kind in TRANSPARENT else 1)
        self.depth = depth
        self.children: dict[str | None, list[str]] = {}
        for name, block in self.blocks.items():
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
            self.sizes[block] = sum(1 for m in self.blocks[block].members if m in self.layers)
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


def _is_identity(analysis: Analysis, node: str) -> bool:
    """A layer that passes its input through (a projection shortcut that was not needed) is
    drawn as a plain edge."""
    return analysis.layers[node].identity


def build_model(analysis: Analysis, *, depth: int | None = None, fold: bool = True,
                params: bool = False, edge_labels: bool = True,
                title: str | None = None) -> DiagramModel:
    """The boxes, clusters and edges of a diagram.

    depth: None opens every block (one box per layer); 0 draws each top-level block as one
    box; 1 opens top-level blocks as clusters and collapses their sub-blocks; and so on.
    fold: draw consecutive identical collapsed blocks as one box marked 'x N'.
    params: add each layer's parameter count (collapsed blocks always show theirs)."""
    if depth is not None and depth < 0:
        raise RenderError(f"depth must be 0 or more, got {depth}")
    view = _View(analysis, depth)
    net, layers = view.net, analysis.layers

    # 1. every analysed layer's box
    place: dict[str, str] = {INPUT: INPUT}
    cluster_of: dict[str, str | None] = {INPUT: None}
    collapsed: dict[str, bool] = {}
    order: list[str] = [INPUT]          # box ids in first-seen (topological) order
    for name in layers:
        box, cluster, is_block = view.place(name)
        place[name] = box
        if box not in cluster_of:
            cluster_of[box] = cluster
            collapsed[box] = is_block
            order.append(box)
    elided = {n for n in layers if place[n] == n and _is_identity(analysis, n)}
    order = [b for b in order if b not in elided]

    # 2. fold runs of identical collapsed sibling blocks
    folds: dict[str, list[str]] = {}    # fold id -> its blocks
    if fold:
        folds = _folds(analysis, view, order, cluster_of, collapsed)
        for fid, run in folds.items():
            for block in run:
                for member in view.blocks[block].members:
                    if member in place:
                        place[member] = fid
            cluster_of[fid] = cluster_of[run[0]]
        first = {run[0]: fid for fid, run in folds.items()}
        folded = {b for run in folds.values() for b in run}
        order = [first.get(b, b) for b in order if b in first or b not in folded]

    # 3. boxes
    outputs = {place[o] for o in net.outputs if o in place}
    boxes: dict[str, Box] = {}
    families: set[str] = set()
    for box_id in order:
        cluster = cluster_of[box_id]
        if box_id == INPUT:
            box = Box(INPUT, "input", [("head", "input"), ("shape", fmt_shape(net.input_shape))],
                      family="input", tooltip="network input")
        elif box_id in folds:
            box = _fold_box(analysis, view, box_id, folds[box_id])
        elif collapsed[box_id]:
            box = _block_box(analysis, view, view.blocks[box_id])
        else:
            info = layers[box_id]
            lines = [("head", info.label), ("shape", fmt_shape(info.output_shape))]
            if params and info.params:
                lines.append(("params", f"{count_text(info.params)} params"))
            box = Box(box_id, "layer", lines, family=info.family,
                      tooltip=f"{box_id} ({info.type})")
        box.cluster = cluster
        box.output = box_id in outputs
        if box.family:
            families.add(box.family)
        boxes[box_id] = box

    # 4. clusters: every open block that holds a box, with its open ancestors
    clusters: dict[str, Cluster] = {}
    for box in boxes.values():
        name = box.cluster
        while name is not None and name not in clusters:
            block = view.blocks[name]
            clusters[name] = Cluster(name, _cluster_label(view, block), block.parent,
                                     view.level[name], block.kind in TRANSPARENT)
            name = block.parent
    clusters = {n: clusters[n] for n in view.blocks if n in clusters}  # definition order

    # 5. edges between boxes (shape-only inputs are not drawn)
    def source_of(src: str) -> tuple[str, bool, str]:
        """The box an input comes from, whether it passed through an elided identity, and the
        layer whose output it is."""
        skip = False
        while src in elided:
            src, skip = net.nodes[src].data_inputs[0], True
        return place[src], skip, src

    def solid(cluster: str | None) -> str | None:
        """The nearest enclosing cluster that is drawn with a border."""
        while cluster is not None and view.blocks[cluster].kind in TRANSPARENT:
            cluster = view.blocks[cluster].parent
        return cluster

    edges: list[Edge] = []
    seen: set[tuple[str, str, bool]] = set()
    labelled: set[str] = set()          # one shape label per source box is enough
    for name in layers:
        if name in elided:
            continue
        node = net.nodes[name]
        dst = place[name]
        for index, src_name in enumerate(node.data_inputs):
            if src_name not in place:
                continue
            src, via_identity, origin = source_of(src_name)
            # a skip into a collapsed block is inside that block: its box just has an input
            skip = (via_identity or index in node.skip_inputs) and \
                boxes[dst].kind not in ("block", "fold")
            if src == dst or (src, dst, skip) in seen:
                continue
            seen.add((src, dst, skip))
            label = None
            if edge_labels and not skip and src not in labelled and origin in layers and \
                    _leaves_cluster(solid(cluster_of[src]), solid(cluster_of[dst]), view):
                label = fmt_shape(layers[origin].output_shape)
                labelled.add(src)
            edges.append(Edge(src, dst, skip, label))
    _place_skips(list(boxes), edges)

    outs = analysis.output_shapes
    out_text = ", ".join(fmt_shape(s) for s in outs)
    summary = (f"input {fmt_shape(net.input_shape)} \u2192 output {out_text}  \u00b7  "
               f"{count_text(analysis.params)} params  \u00b7  {human(analysis.macs)} MACs")
    return DiagramModel(title or net.name, summary, boxes, clusters, edges,
                        [f for f in FAMILY_COLOURS if f in families])


def _place_skips(order: list[str], edges: list[Edge]) -> None:
    """Give skip edges the length of the path they bypass.

    A box fed only by a skip (a projection shortcut) would otherwise sit right below the
    block's input, beside the body's first layer; stretched this way it sits just before the
    merge it feeds, and the skip runs down beside the body."""
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
    for b in reversed(order):  # pull skip-fed boxes with no other input down to their consumer
        if b in fed_by_skip and not preds[b] and succs[b]:
            rank[b] = min(rank[s] for s in succs[b]) - 1
    for e in edges:
        if e.skip:
            e.minlen = max(1, rank[e.dst] - rank[e.src])


def _leaves_cluster(src: str | None, dst: str | None, view: _View) -> bool:
    """True when an edge leaves an open cluster (src's cluster does not also hold dst)."""
    if src is None:
        return False
    name = dst
    while name is not None:
        if name == src:
            return False
        name = view.blocks[name].parent
    return True


def _total(analysis: Analysis, blocks: list[Block], attr: str) -> int:
    return sum(getattr(analysis.layers[m], attr) for b in blocks for m in b.members
               if m in analysis.layers)


def _block_box(analysis: Analysis, view: _View, block: Block) -> Box:
    head = block_title(block)
    copies = [view.blocks[c] for c in view.children.get(block.name, [])]
    if block.kind == "repeat" and copies:
        titles = {block_title(c) for c in copies}
        one = titles.pop() if len(titles) == 1 else "sequential"
        head = f"{one if one != 'sequential' else 'repeat'} x {len(copies)}"
    kind = block.kind.replace("_", " ")
    name = f"{block.name} ({kind})" if block.title and kind != head else block.name
    lines = [("head", head), ("name", name)]
    if block.output in analysis.layers:
        lines.append(("shape", fmt_shape(analysis.layers[block.output].output_shape)))
    lines.append(("params", f"{count_text(_total(analysis, [block], 'params'))} params"))
    n = sum(1 for m in block.members if m in analysis.layers)
    return Box(block.name, "block", lines, tooltip=f"{block.name}: {block.kind}, {n} layers")


def _fold_box(analysis: Analysis, view: _View, fid: str, run: list[str]) -> Box:
    blocks = [view.blocks[b] for b in run]
    last = blocks[-1]
    lines = [("head", f"{block_title(blocks[0])} x {len(run)}"),
             ("name", f"{run[0]} \u2013 {run[-1]}")]
    if last.output in analysis.layers:
        lines.append(("shape", fmt_shape(analysis.layers[last.output].output_shape)))
    lines.append(("params", f"{count_text(_total(analysis, blocks, 'params'))} params"))
    shown = ", ".join(run) if len(run) <= 8 else f"{', '.join(run[:3])}, \u2026, {run[-1]}"
    return Box(fid, "fold", lines, tooltip=f"{len(run)} identical blocks: {shown}",
               count=len(run))


def _cluster_label(view: _View, block: Block) -> str:
    if block.kind in TRANSPARENT:
        return ""
    if block.kind == "repeat":
        copies = view.children.get(block.name, [])
        return f"{block.name}  \u00b7  repeat x {len(copies)}" if copies else block.name
    if block.kind == "sequential" and not block.title:
        return block.name
    return f"{block.name}  \u00b7  {block_title(block)}"


def _signature(analysis: Analysis, view: _View, block: Block):
    """Everything that makes two blocks look the same in a diagram, relative to their names."""
    prefix = block.name + "."
    members = set(block.members)
    rows = []
    for m in block.members:
        info = analysis.layers.get(m)
        if info is None:
            return None
        node = view.net.nodes[m]
        ins = tuple(i[len(prefix):] if i in members else "^" for i in node.inputs)
        rows.append((m[len(prefix):], info.type, info.label, info.output_shape, info.params,
                     info.buffers, ins, tuple(sorted(node.skip_inputs))))
    subs, todo = [], list(view.children.get(block.name, []))
    while todo:
        sub = view.blocks[todo.pop(0)]
        subs.append((sub.name[len(prefix):], sub.kind, sub.title))
        todo.extend(view.children.get(sub.name, []))
    return block.kind, block.title, tuple(rows), tuple(subs)


def _folds(analysis: Analysis, view: _View, order: list[str], cluster_of, collapsed
           ) -> dict[str, list[str]]:
    """Runs of 2+ consecutive collapsed sibling blocks that are identical and chained: each one
    reads only the previous one's output, and only the next one reads its layers."""
    net = view.net
    consumers: dict[str, set[str]] = {}
    for node in net.nodes.values():
        for i in node.inputs:
            consumers.setdefault(i, set()).add(node.name)
    for o in net.outputs:
        consumers.setdefault(o, set()).add("<output>")

    def outside_readers(block: Block) -> dict[str, set[str]] | None:
        members = set(block.members)
        readers = {m: consumers.get(m, set()) - members for m in block.members}
        readers = {m: r for m, r in readers.items() if r}
        return readers if set(readers) <= {block.output} else None

    def external_inputs(block: Block) -> set[str]:
        members = set(block.members)
        return {i for m in block.members for i in net.nodes[m].inputs if i not in members}

    runs: dict[str, list[str]] = {}
    by_cluster: dict[str | None, list[str]] = {}
    for box in order:
        by_cluster.setdefault(cluster_of[box], []).append(box)
    for items in by_cluster.values():
        run: list[str] = []
        sig = None
        for box in items + [None]:
            ok = False
            if box is not None and collapsed.get(box) and run:
                prev = view.blocks[run[-1]]
                block = view.blocks[box]
                readers = outside_readers(prev)
                ok = (readers is not None
                      and set().union(*readers.values()) <= set(block.members)
                      and external_inputs(block) == {prev.output}
                      and outside_readers(block) is not None
                      and _signature(analysis, view, block) == sig)
            if ok:
                run.append(box)
                continue
            if len(run) > 1:
                runs[f"{run[0]}..{run[-1]}"] = run
            run, sig = [], None
            if box is not None and collapsed.get(box):
                run = [box]
                sig = _signature(analysis, view, view.blocks[box])
    return runs


# ---- DOT text ---------------------------------------------------------------------------------

def quote(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def html(text: str) -> str:
    """Text for a graphviz HTML-like label."""
    text = "".join(max(c, " ") for c in text)  # control characters break dot
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


LINE_STYLES = {
    "head": ('<FONT POINT-SIZE="12">', "</FONT>"),
    "name": ('<FONT POINT-SIZE="9" COLOR="#495057">', "</FONT>"),
    "shape": ('<FONT POINT-SIZE="10" COLOR="#212529">', "</FONT>"),
    "params": ('<FONT POINT-SIZE="9" COLOR="#495057">', "</FONT>"),
}


def _box_label(box: Box) -> str:
    parts = []
    for style, text in box.lines:
        start, end = LINE_STYLES[style]
        body = html(text)
        if style == "head" and box.kind in ("block", "fold"):
            body = f"<B>{body}</B>"
        parts.append(f"{start}{body}{end}")
    return "<" + "<BR/>".join(parts) + ">"


def _box_attrs(box: Box) -> dict[str, str]:
    classes = ["box", box.kind] + ([box.family] if box.family else []) + \
        (["output"] if box.output else [])
    attrs = {"label": _box_label(box), "tooltip": quote(box.tooltip or box.id),
             "class": quote(" ".join(classes))}
    if box.kind in ("block", "fold"):
        attrs.update(fillcolor=quote(BLOCK_FILL), color=quote(BLOCK_BORDER), penwidth="1.4")
        if box.kind == "fold":
            attrs.update(shape="box3d", style="filled", margin='"0.14,0.1"')
    else:
        attrs["fillcolor"] = quote(FAMILY_COLOURS.get(box.family or "", "#ffffff"))
    if box.output:
        attrs["penwidth"] = "2"
    return attrs


def _attr_list(attrs: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in attrs.items())


def _legend(model: DiagramModel) -> str:
    cells = []
    for family in model.families:
        if family == "input":
            continue
        cells.append(f'<TD BGCOLOR="{FAMILY_COLOURS[family]}" BORDER="1" COLOR="#868e96">'
                     f'<FONT POINT-SIZE="10">&#160;{family}&#160;</FONT></TD>')
    if model.has_blocks:
        cells.append(f'<TD BGCOLOR="{BLOCK_FILL}" BORDER="1" COLOR="{BLOCK_BORDER}">'
                     f'<FONT POINT-SIZE="10">&#160;<B>block</B>&#160;</FONT></TD>')
    if model.has_skips:
        cells.append(f'<TD><FONT POINT-SIZE="10" COLOR="{SKIP_COLOUR}">'
                     f'<B>- - -&#9658;</B> skip</FONT></TD>')
    if not cells:
        return ""
    return ('<TR><TD><TABLE BORDER="0" CELLSPACING="4" CELLPADDING="2"><TR>'
            + "".join(cells) + "</TR></TABLE></TD></TR>")


def _title(model: DiagramModel, legend: bool) -> str:
    return ('<<TABLE BORDER="0" CELLSPACING="1" CELLPADDING="1">'
            f'<TR><TD><FONT POINT-SIZE="18"><B>{html(model.name)}</B></FONT></TD></TR>'
            f'<TR><TD><FONT POINT-SIZE="11" COLOR="#343a40">{html(model.summary)}</FONT></TD></TR>'
            + (_legend(model) if legend else "") + "</TABLE>>")


def to_dot(model: DiagramModel, *, rankdir: str = "TB", legend: bool = True) -> str:
    """DOT source for a model (left-to-right with rankdir='LR')."""
    rankdir = rankdir.upper()
    if rankdir not in RANKDIRS:
        raise RenderError(f"rankdir must be one of {', '.join(RANKDIRS)}, got {rankdir!r}")
    out = [f"digraph {quote(model.name)} {{"]
    vertical = rankdir in ("TB", "BT")
    graph = {"rankdir": rankdir, "label": _title(model, legend), "labelloc": "t",
             "labeljust": "c" if vertical else "l", "fontname": quote(FONT), "newrank": "true",
             "nodesep": "0.25" if vertical else "0.2",
             "ranksep": "0.3", "compound": "true", "pad": "0.2", "bgcolor": "white"}
    out.append(f"  graph [{_attr_list(graph)}];")
    out.append(f'  node [shape=box, style="rounded,filled", fontname={quote(FONT)}, '
               f'color="#868e96", penwidth=0.8, margin="0.12,0.05", height=0.3];')
    out.append(f"  edge [color={quote(EDGE_COLOUR)}, arrowsize=0.6, penwidth=0.9, "
               f"fontname={quote(FONT)}, fontsize=9, fontcolor=\"#495057\"];")

    by_cluster: dict[str | None, list[Box]] = {}
    for box in model.boxes.values():
        by_cluster.setdefault(box.cluster, []).append(box)
    sub: dict[str | None, list[str]] = {}
    for name, cluster in model.clusters.items():
        sub.setdefault(cluster.parent, []).append(name)

    def emit(cluster: str | None, indent: str) -> None:
        for name in sub.get(cluster, []):
            c = model.clusters[name]
            out.append(f"{indent}subgraph {quote('cluster_' + name)} {{")
            if c.transparent:
                attrs = {"label": '""', "peripheries": "0", "class": quote("cluster branch")}
            else:
                fill = CLUSTER_FILLS[min(c.level - 1, len(CLUSTER_FILLS) - 1)]
                attrs = {"label": f"<<FONT POINT-SIZE=\"10\" COLOR=\"#343a40\">"
                                  f"{html(c.label)}</FONT>>",
                         "style": quote("rounded,filled"), "fillcolor": quote(fill),
                         "color": quote("#adb5bd"), "labeljust": "l", "margin": "8",
                         "class": quote("cluster block")}
            out.append(f"{indent}  graph [{_attr_list(attrs)}];")
            emit(name, indent + "  ")
            out.append(f"{indent}}}")
        for box in by_cluster.get(cluster, []):
            out.append(f"{indent}{quote(box.id)} [{_attr_list(_box_attrs(box))}];")

    emit(None, "  ")
    for e in model.edges:
        attrs: dict[str, str] = {}
        if e.skip:
            attrs.update(color=quote(SKIP_COLOUR), style="dashed", penwidth="1.4",
                         arrowsize="0.7", **{"class": quote("skip")})
        if e.minlen > 1:
            attrs["minlen"] = str(e.minlen)
        if e.label:
            attrs["label"] = quote(e.label)
        tail = f" [{_attr_list(attrs)}]" if attrs else ""
        out.append(f"  {quote(e.src)} -> {quote(e.dst)}{tail};")
    out.append("}")
    return "\n".join(out) + "\n"


# ---- running dot ------------------------------------------------------------------------------

def find_dot(dot: str | os.PathLike | None = None) -> str:
    """Path of graphviz's dot program: the argument, $ARCHSPEC_DOT, or 'dot' on the PATH."""
    wanted = str(dot) if dot else os.environ.get("ARCHSPEC_DOT") or "dot"
    found = shutil.which(wanted)
    if found is None:
        raise RenderError(f"graphviz's 'dot' program was not found (looked for '{wanted}')",
                          INSTALL_HINT)
    return found


def run_dot(source: str, fmt: str, *, dot: str | os.PathLike | None = None,
            dpi: int | None = None, timeout: float = 300) -> bytes:
    """The output of `dot -T<fmt>` for DOT source; RenderError when dot is missing or fails."""
    if fmt not in FORMATS or fmt == "dot":
        raise RenderError(f"dot cannot make format {fmt!r}; use one of svg, png, pdf")
    cmd = [find_dot(dot), f"-T{fmt}"]
    if dpi and fmt == "png":
        cmd.append(f"-Gdpi={dpi}")
    try:
        proc = subprocess.run(cmd, input=source.encode("utf-8"), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"dot took more than {timeout:g} s",
                          "draw fewer boxes: a smaller depth, with folding on") from None
    except OSError as exc:
        raise RenderError(f"could not run {cmd[0]}: {exc}", INSTALL_HINT) from None
    if proc.returncode != 0 or not proc.stdout:
        message = proc.stderr.decode("utf-8", "replace").strip() or f"exit status {proc.returncode}"
        raise RenderError(f"dot failed: {message}")
    return proc.stdout


def output_format(output: str | os.PathLike | None, fmt: str | None) -> str:
    """The format asked for, else the one the output file's suffix names, else svg."""
    if fmt:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise RenderError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    if output is None:
        return "svg"
    suffix = Path(output).suffix.lower()
    if suffix not in SUFFIXES:
        raise RenderError(f"cannot tell the format from the file name '{output}'",
                          "name it .svg, .png, .pdf or .dot, or pass a format (--format)")
    return SUFFIXES[suffix]


MAX_DOT_BOXES = 2_000  # dot's layout grows superlinearly; beyond this it takes minutes or crashes


def check_drawable(model: DiagramModel) -> None:
    """Refuse, before running dot, a drawing too large for it to lay out."""
    if len(model.boxes) > MAX_DOT_BOXES:
        raise RenderError(f"the diagram would have {len(model.boxes):,} boxes, more than dot can "
                          f"lay out (limit {MAX_DOT_BOXES:,})",
                          "draw blocks as single boxes with --depth 0 or --depth 1 (repeated "
                          "blocks fold into one 'x N' box), or write the DOT source with "
                          "--format dot")


def render(analysis: Analysis, output: str | os.PathLike | None = None, *,
           format: str | None = None, depth: int | None = None, fold: bool = True,
           params: bool = False, rankdir: str = "TB", legend: bool = True,
           edge_labels: bool = True, title: str | None = None, dpi: int | None = None,
           dot: str | os.PathLike | None = None) -> str | bytes:
    """Draw a block diagram; write it to `output` (atomically) when given, and return it.

    format: svg, png, pdf or dot (DOT source, needs no graphviz); default from the output
    file's suffix, else svg. Returns str for svg and dot, bytes for png and pdf.
    depth: how deep blocks are opened as clusters (None: all; 0: each top-level block is
    one box). fold: consecutive identical collapsed blocks become one 'x N' box.
    params: show each layer's parameter count. rankdir: 'TB' (top to bottom) or 'LR'.
    dpi: PNG resolution. dot: the dot program (default $ARCHSPEC_DOT, else 'dot' on PATH).
    Raises RenderError when dot is missing or fails, FileError when the output path is refused
    or cannot be written (archspec.fileio's output rule); then no file is written."""
    fmt = output_format(output, format)
    if output is not None:
        source = analysis.network.source
        for spec_file in [getattr(source, "file", None), *getattr(source, "paths", ())]:
            if spec_file and Path(spec_file).is_file() and \
                    Path(output).resolve() == Path(spec_file).resolve():
                raise RenderError(f"refusing to overwrite the input spec '{spec_file}'")
    model = build_model(analysis, depth=depth, fold=fold, params=params,
                        edge_labels=edge_labels, title=title)
    if fmt != "dot":
        check_drawable(model)
    source = to_dot(model, rankdir=rankdir, legend=legend)
    data = source.encode("utf-8") if fmt == "dot" else run_dot(source, fmt, dot=dot, dpi=dpi)
    if output is not None:
        from ..fileio import write_output
        write_output(output, lambda f: f.write(data))
    return data.decode("utf-8") if fmt in ("svg", "dot") else data

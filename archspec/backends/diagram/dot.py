"""DOT source for a diagram model, built (and quoted) by the graphviz package."""
from __future__ import annotations

import graphviz

from .lowering import FAMILY_COLOURS
from .model import Box, DiagramModel, RenderError

RANKDIRS = ("TB", "LR", "BT", "RL")
BLOCK_FILL = "#f1f3f5"          # a collapsed block
BLOCK_BORDER = "#495057"
CLUSTER_FILLS = ("#f8f9fa", "#eef1f4", "#e3e7eb", "#d8dde2")  # by nesting level
SKIP_COLOUR = "#e8590c"
EDGE_COLOUR = "#495057"
FONT = "Helvetica"

# Skip edges leave and enter their boxes on the side away from cluster titles (written at the
# top left) and shape labels (written right of their edge), by rankdir.
SKIP_PORTS = {"TB": "e", "BT": "e", "LR": "s", "RL": "s"}


def plain(text: str) -> str:
    """Text for an ordinary DOT string: control characters dropped, backslashes literal (the
    graphviz package quotes the rest)."""
    return graphviz.escape("".join(max(c, " ") for c in text))


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


def box_label(box: Box) -> str:
    parts = []
    for style, text in box.lines:
        start, end = LINE_STYLES[style]
        body = html(text)
        if style == "head" and box.kind in ("block", "fold"):
            body = f"<B>{body}</B>"
        parts.append(f"{start}{body}{end}")
    return "<" + "<BR/>".join(parts) + ">"


def box_attrs(box: Box) -> dict[str, str]:
    classes = ["box", box.kind] + ([box.family] if box.family else []) + \
        (["output"] if box.output else [])
    attrs = {"label": box_label(box), "tooltip": plain(box.tooltip or box.id),
             "class": " ".join(classes)}
    if box.shape != "box":
        attrs.update(shape=box.shape, style="filled", margin="0.04,0.02")
    if box.kind in ("block", "fold"):
        attrs.update(fillcolor=BLOCK_FILL, color=BLOCK_BORDER, penwidth="1.4")
        if box.kind == "fold":
            attrs.update(shape="box3d", style="filled", margin="0.14,0.1")
    else:
        attrs["fillcolor"] = FAMILY_COLOURS.get(box.family or "", "#ffffff")
    if box.output:
        attrs["penwidth"] = "2"
    return attrs


def legend_row(model: DiagramModel) -> str:
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


def title_label(model: DiagramModel, legend: bool) -> str:
    return ('<<TABLE BORDER="0" CELLSPACING="1" CELLPADDING="1">'
            f'<TR><TD><FONT POINT-SIZE="18"><B>{html(model.name)}</B></FONT></TD></TR>'
            f'<TR><TD><FONT POINT-SIZE="11" COLOR="#343a40">{html(model.summary)}</FONT></TD></TR>'
            + (legend_row(model) if legend else "") + "</TABLE>>")


def cluster_attrs(model: DiagramModel, name: str) -> dict[str, str]:
    cluster = model.clusters[name]
    if cluster.transparent:
        return {"label": "", "peripheries": "0", "class": "cluster branch"}
    fill = CLUSTER_FILLS[min(cluster.level - 1, len(CLUSTER_FILLS) - 1)]
    return {"label": "", "style": "rounded,filled", "fillcolor": fill, "color": "#adb5bd",
            "margin": "8", "class": "cluster block"}


def title_id(cluster: str) -> str:
    return f"{cluster} title"  # a space: no layer or block name has one


def title_attrs(model: DiagramModel, name: str) -> dict[str, str]:
    """A cluster's title is a text-only node above the boxes that enter the cluster: dot routes
    edges around nodes, so no edge is drawn through a title (a cluster label gets no room)."""
    return {"label": f'<<FONT POINT-SIZE="10" COLOR="#343a40">{html(model.clusters[name].label)}'
                     "</FONT>>", "shape": "plain", "style": "", "class": "title"}


def title_edges(model: DiagramModel) -> list[tuple[str, str]]:
    """Invisible edges that put each framed cluster's title below the boxes whose edges enter
    the cluster, and above the boxes they enter (or the title of the cluster inside it that
    holds such a box)."""
    chains = {}
    for box in model.boxes.values():
        chain, name = [], box.cluster
        while name is not None:
            chain.insert(0, name)
            name = model.clusters[name].parent
        chains[box.id] = chain
    pairs: dict[tuple[str, str], None] = {}
    for edge in model.edges:
        outside = set(chains[edge.src])
        inner = [c for c in chains[edge.dst] if c not in outside
                 and not model.clusters[c].transparent]
        if inner:  # the title gets a rank of its own, between the edge's ends
            pairs[(edge.src, title_id(inner[0]))] = None
        for outer, below in zip(inner, inner[1:] + [None]):
            pairs[(title_id(outer), title_id(below) if below else edge.dst)] = None
    return list(pairs)


def edge_attrs(edge, rankdir: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if edge.skip:
        port = SKIP_PORTS[rankdir]
        attrs.update(color=SKIP_COLOUR, style="dashed", penwidth="1.4", arrowsize="0.7",
                     tailport=port, headport=port, **{"class": "skip"})
    if edge.minlen > 1:
        attrs["minlen"] = str(edge.minlen)
    if edge.tight:
        attrs["weight"] = "8"
    if edge.label:
        attrs["label"] = plain(edge.label)
    return attrs


def to_dot(model: DiagramModel, *, rankdir: str = "TB", legend: bool = True) -> str:
    """DOT source for a model (left-to-right with rankdir='LR')."""
    rankdir = rankdir.upper()
    if rankdir not in RANKDIRS:
        raise RenderError(f"rankdir must be one of {', '.join(RANKDIRS)}, got {rankdir!r}")
    vertical = rankdir in ("TB", "BT")
    graph = graphviz.Digraph(
        plain(model.name),
        graph_attr={"rankdir": rankdir, "label": title_label(model, legend), "labelloc": "t",
                    "labeljust": "c" if vertical else "l", "fontname": FONT, "newrank": "true",
                    "nodesep": "0.25" if vertical else "0.2", "ranksep": "0.3",
                    "compound": "true", "pad": "0.2", "bgcolor": "white"},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": FONT,
                   "color": "#868e96", "penwidth": "0.8", "margin": "0.12,0.05",
                   "height": "0.3"},
        edge_attr={"color": EDGE_COLOUR, "arrowsize": "0.6", "penwidth": "0.9",
                   "fontname": FONT, "fontsize": "9", "fontcolor": "#495057"})

    by_cluster: dict[str | None, list[Box]] = {}
    for box in model.boxes.values():
        by_cluster.setdefault(box.cluster, []).append(box)
    inner: dict[str | None, list[str]] = {}
    for name, cluster in model.clusters.items():
        inner.setdefault(cluster.parent, []).append(name)

    def fill(target: graphviz.Digraph, cluster: str | None) -> None:
        for name in inner.get(cluster, []):
            sub = graphviz.Digraph(name=f"cluster_{name}", graph_attr=cluster_attrs(model, name))
            if not model.clusters[name].transparent:
                sub.node(title_id(name), **title_attrs(model, name))
            fill(sub, name)
            target.subgraph(sub)
        for box in by_cluster.get(cluster, []):
            target.node(box.id, **box_attrs(box))

    fill(graph, None)
    for title, below in title_edges(model):
        graph.edge(title, below, style="invis")
    for edge in model.edges:
        graph.edge(edge.src, edge.dst, **edge_attrs(edge, rankdir))
    return graph.source

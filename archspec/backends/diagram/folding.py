"""Folding: consecutive identical blocks drawn as one 'x N' box (ResNet's stages, a repeat)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...ir import Block

if TYPE_CHECKING:
    from .model import View


def signature(view: View, block: Block):
    """Everything that makes two blocks look the same in a diagram, relative to their names."""
    prefix = block.name + "."
    members = set(block.members)
    rows = []
    for m in block.members:
        info = view.analysis.layers.get(m)
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


def fold_runs(view: View, order: list[str], cluster_of: dict[str, str | None],
              collapsed: set[str]) -> dict[str, list[str]]:
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

    def continues(prev: Block, block: Block, sig) -> bool:
        readers = outside_readers(prev)
        return (readers is not None
                and set().union(*readers.values()) <= set(block.members)
                and external_inputs(block) == {prev.output}
                and outside_readers(block) is not None
                and signature(view, block) == sig)

    runs: dict[str, list[str]] = {}
    by_cluster: dict[str | None, list[str]] = {}
    for box in order:
        by_cluster.setdefault(cluster_of[box], []).append(box)
    for items in by_cluster.values():
        run: list[str] = []
        sig = None
        for box in items + [None]:
            if box in collapsed and run and \
                    continues(view.blocks[run[-1]], view.blocks[box], sig):
                run.append(box)
                continue
            if len(run) > 1:
                runs[f"{run[0]}..{run[-1]}"] = run
            run, sig = [], None
            if box in collapsed:
                run = [box]
                sig = signature(view, view.blocks[box])
    return runs

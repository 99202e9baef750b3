"""The Python source of a compiled model: one class per block with its own straight-line method,
so no method is longer than its block (CPython compiles a 100,000-statement function in 26 s;
a repeat of 9,999 blocks is one 9,999-line method and one 10-line class shared by its items).

A block is called with its inputs in a list, which its method empties, and the caller drops
its own references first, so every tensor is freed after its last use exactly as in one flat
forward (the memory figures count on that). A block whose layers are not contiguous in definition order is inlined
into its parent's method. No torch here: the compiler executes the text."""
from __future__ import annotations

import itertools
import keyword
import re
from dataclasses import dataclass, field

ROOT = ""
BLOCK_METHOD = "archspec_forward"
OP_PREFIX = "archspec_op_"  # a direct layer's op, kept on its block beside the layer's tensor


@dataclass
class Function:
    """One block's method (the root's forward): the units it calls, in order."""
    path: str
    units: list[str] = field(default_factory=list)  # leaf layers and inner blocks, by name
    inputs: list[str] = field(default_factory=list)  # values from outside, in definition order
    outputs: list[str] = field(default_factory=list)  # values read outside, in definition order


@dataclass
class Program:
    functions: dict[str, Function]  # by block path, ROOT first, parents before children
    sources: dict[str, str]         # each block's method source, by block path


class Blocks:
    """The enclosing block paths of layer names, outermost first, computed once per block."""

    def __init__(self):
        self.of_block: dict[str, list[str]] = {ROOT: []}

    def of(self, name: str) -> list[str]:
        return self.path_chain(name.rpartition(".")[0])

    def path_chain(self, path: str) -> list[str]:
        chain = self.of_block.get(path)
        if chain is None:
            chain = self.of_block[path] = self.path_chain(path.rpartition(".")[0]) + [path]
        return chain


def contiguous_blocks(parents: list[str], blocks: Blocks) -> set[str]:
    """Blocks whose layers follow one another in definition order (each gets its own method),
    from each layer's block path: a block is contiguous unless it is entered again after it
    was left (only where the block path changes is there anything to do)."""
    entered: set[str] = set()
    left: set[str] = set()
    broken: set[str] = set()
    inside: list[str] = []
    previous = None
    for parent in parents:
        if parent == previous:
            continue
        previous = parent
        chain = blocks.path_chain(parent)
        common, shorter = 0, min(len(inside), len(chain))
        while common < shorter and inside[common] == chain[common]:
            common += 1
        left.update(inside[common:])
        for path in chain[common:]:
            (broken if path in left else entered).add(path)
        inside = chain
    return entered - broken


def access(base: str, relative: str) -> str:
    expr = base
    for part in relative.split("."):
        expr = (f"{expr}.{part}" if part.isidentifier() and not keyword.iskeyword(part)
                else f"getattr({expr}, {part!r})")
    return expr


class Namer:
    """Local variable names of one method: a value's name relative to the block, made an
    identifier, unique."""

    def __init__(self, path: str):
        self.prefix = path + "." if path else ""
        self.names: dict[str, str] = {}
        self.taken = {"self", "inputs", "None", "getattr"}

    def __call__(self, value: str) -> str:
        if value in self.names:
            return self.names[value]
        text = value.removeprefix(self.prefix)
        base = re.sub(r"\W", "_", text)
        if not base.isidentifier() or keyword.iskeyword(base):
            base = "v_" + base
        name, n = base, 0
        while name in self.taken:
            n += 1
            name = f"{base}_{n}"
        self.taken.add(name)
        self.names[value] = name
        return name


def plan(nodes: dict[str, list[str]], outputs: list[str], input_value: str) -> dict[str, Function]:
    """nodes: layer name -> input values, in definition order."""
    order = list(nodes)
    parents = [name.rpartition(".")[0] for name in order]
    blocks = Blocks()
    outlined = contiguous_blocks(parents, blocks)
    functions = {ROOT: Function(ROOT)}
    chain_of_block: dict[str, list[str]] = {}  # the outlined blocks around a block's layers
    chains: dict[str, list[str]] = {input_value: [ROOT]}
    previous_parent, chain = None, None
    for name, parent in zip(order, parents):
        if parent != previous_parent:  # a layer in the same block as the last one opens none
            previous_parent = parent
            chain = chain_of_block.get(parent)
            if chain is None:
                chain = chain_of_block[parent] = [ROOT] + [
                    p for p in blocks.path_chain(parent) if p in outlined]
                for outer, inner in itertools.pairwise(chain):
                    if inner not in functions:
                        functions[inner] = Function(inner)
                        functions[outer].units.append(inner)
            units = functions[chain[-1]].units
        chains[name] = chain
        units.append(name)
    inputs: dict[str, dict[str, None]] = {p: {} for p in functions}
    exported: dict[str, set[str]] = {p: set() for p in functions}
    for name in order:
        reader_chain = chains[name]
        for value in nodes[name]:
            source_chain = chains[value]
            if source_chain is reader_chain:
                continue
            common, shorter = 1, min(len(source_chain), len(reader_chain))  # both start at ROOT
            while common < shorter and source_chain[common] == reader_chain[common]:
                common += 1
            for path in reader_chain[common:]:
                inputs[path].setdefault(value)
            for path in source_chain[common:]:
                exported[path].add(value)
    for value in outputs:  # read by the model's caller, outside every block
        for path in chains[value][1:]:
            exported[path].add(value)
    rank = {name: i for i, name in enumerate(order)}
    rank[input_value] = -1
    for path, function in functions.items():
        function.inputs = list(inputs[path])
        function.outputs = list(exported[path])
        for values in (function.inputs, function.outputs):
            if len(values) > 1:
                values.sort(key=rank.__getitem__)
    return functions


def template(function: Function, functions: dict[str, Function], nodes: dict[str, list[str]],
             direct: set[str]) -> tuple:
    """What a block's method text depends on: names relative to the block, inputs by position."""
    cut = len(function.path) + 1
    position = {v: i for i, v in enumerate(function.inputs)}

    def read(value):
        index = position.get(value)
        return value[cut:] if index is None else index

    return (tuple((u[cut:], u in functions, u in direct,
                   tuple(map(read, functions[u].inputs if u in functions else nodes[u])),
                   tuple(map(read, functions[u].outputs)) if u in functions else ())
                  for u in function.units),
            len(function.inputs), tuple(v[cut:] for v in function.outputs))


def tuple_text(names: list[str]) -> str:
    return names[0] if len(names) == 1 else "(" + ", ".join(names) + ")"


def method_source(function: Function, functions: dict[str, Function], nodes: dict[str, list[str]],
                  direct: set[str], outputs: list[str], input_value: str) -> list[str]:
    """The method's lines (without the class line), indented by four spaces."""
    local = Namer(function.path)
    root = function.path == ROOT
    if root:
        local.names[input_value] = "x"
        local.taken.add("x")
        lines = ["def forward(self, x):"]
    else:
        lines = [f"def {BLOCK_METHOD}(self, inputs):"]
        names = ["x"] if len(function.inputs) == 1 else [
            f"x{i}" for i in range(len(function.inputs))]  # generic: equal blocks share a class
        for value, name in zip(function.inputs, names):
            local.names[value] = name
            local.taken.add(name)
        if names:
            lines.append(f"    {', '.join(names)}{',' if len(names) == 1 else ''} = inputs; "
                         "inputs.clear()")
    reads = {u: (functions[u].inputs if u in functions else nodes[u]) for u in function.units}
    returned = set(outputs if root else function.outputs)
    last_read: dict[str, int] = {}
    for index, unit in enumerate(function.units):
        for value in reads[unit]:
            last_read[value] = index
    prefix = function.path + "." if function.path else ""

    def dead_after(index: int, values) -> list[str]:
        return [local(v) for v in dict.fromkeys(values)
                if last_read.get(v, index) == index and v not in returned]

    for index, unit in enumerate(function.units):
        relative = unit[len(prefix):]
        if unit in functions:
            block = functions[unit]
            args = ", ".join(local(v) for v in block.inputs)
            freed = dead_after(index, block.inputs)
            lines.append(f"    inputs = [{args}]" + "".join(f"; {v} = None" for v in freed))
            call = f"{access('self', relative)}(inputs)"
            results = [local(v) for v in block.outputs]
            lines.append(f"    {', '.join(results)} = {call}" if len(results) > 1
                         else f"    {results[0]} = {call}" if results else f"    {call}")
            unused = [local(v) for v in block.outputs if v not in last_read and v not in returned]
        else:
            args = [local(v) for v in nodes[unit]]
            if unit in direct:
                holder, _, leaf = relative.rpartition(".")
                base = access("self", holder) if holder else "self"
                op = (f"{base}.{OP_PREFIX}{leaf}" if (OP_PREFIX + leaf).isidentifier()
                      else f"getattr({base}, {OP_PREFIX + leaf!r})")
                call = f"{op}({', '.join(args + [access('self', relative)])})"
            else:
                call = f"{access('self', relative)}({', '.join(args)})"
            freed = dead_after(index, nodes[unit])
            lines.append(f"    {local(unit)} = {call}" + "".join(f"; {v} = None" for v in freed))
            unused = [local(unit)] if unit not in last_read and unit not in returned else []
        if unused:
            lines[-1] += "".join(f"; {v} = None" for v in unused)
    results = [local(v) for v in (outputs if root else function.outputs)]
    lines.append(f"    return {tuple_text(results)}" if results else "    return None")
    return lines


def program(nodes: dict[str, list[str]], outputs: list[str], input_value: str,
            direct: set[str]) -> Program:
    functions = plan(nodes, outputs, input_value)
    sources: dict[str, str] = {}
    by_template: dict[tuple, str] = {}
    for path, function in functions.items():
        key = None if path == ROOT else template(function, functions, nodes, direct)
        source = by_template.get(key) if key is not None else None
        if source is None:
            source = "\n".join(method_source(function, functions, nodes, direct, outputs,
                                             input_value))
            if key is not None:
                by_template[key] = source
        sources[path] = source
    return Program(functions, sources)

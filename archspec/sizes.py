"""Which input sizes a network accepts, derived from the layers' integer shape rules.

Along one open size n (the others fixed), every layer's length is a composition of
floor((n + a) / s) + b (conv, pool; ceil_mode too), n * s + b (transposed conv, upsample), n
(pointwise), a constant (adaptive and global pools) and sums or products of these (concat along
an axis, flatten). Such a composition has a period P: f(n + P) = f(n) + C for every n, where P is
the lcm over a layer's inputs of their periods times the layer's own (LayerKind.size_period, a
stride). A layer's conditions on its input are a lower bound (a window fits, a size >= 1), equal
sizes at a join, or a size equal to a fixed one (in_features, the spec's own weights): on a class
n = r + P q the valid q are all from some q0, a single q, or none, and a class valid at two
consecutive q stays valid. So a scan per class, run until each class is settled (valid twice in a
row; or failing at one layer that sees the same inputs, or a join whose inputs grow alike, so
the same differences, forever; or a layer stepped alone on its growing inputs up to STEP_CAP
without passing), then checked over two more periods, gives the exact set.

The dims are taken to be independent (each layer's rule acts per axis); a layer that mixes them
(flatten then dense with fixed weights) makes the set of one depend on the others, which are held
at their base sizes (ScanResult.base) and reported so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction

from .analysis import apply_rules, check_layouts, output_layout
from .errors import InternalError
from .ir import INPUT, Network, Node
from .layers.base import Shape, ShapeProblem

CAP = 65_536        # sizes a dead class is checked up to, one layer at a time
REBUILT_CAP = 512   # sizes checked one by one when the layers read $in_shape (each is a build)
STEP_CAP = 8_192    # a layer failing alone on growing inputs is stepped up to this size


@dataclass
class Failure:
    node: str
    problem: ShapeProblem
    in_shapes: list[Shape]


@dataclass
class Outcome:
    """The network at one input shape: every node's output shape, or the first failure."""
    shapes: dict[str, Shape] = field(default_factory=dict)
    failure: Failure | None = None
    layouts: dict[str, str] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.failure is None


class Propagator:
    """The shape rules run over the network at many input shapes (no fields or memory: the
    analysis's own rules and layout checks, cached per config and input shapes). With a
    reference input, a layer's parameter count must stay the one it has there: one set of
    weights serves every size."""

    def __init__(self, network: Network, reference: Shape | None = None):
        self.network, self.rules = network, {}
        self.reference, self.reference_params = None, None
        if reference is not None:
            ref = self.run(reference)
            if ref.valid:
                self.reference, self.reference_params = tuple(reference), ref.params

    def network_at(self, shape: Shape) -> Network:
        net = self.network
        if net.at_input is not None and tuple(shape) != tuple(net.input_shape):
            return net.at_input(tuple(shape))
        return net

    def node_output(self, node: Node, in_shapes: list[Shape], in_layouts: list[str],
                    rules: dict) -> tuple[Shape, str, int]:
        """The node's output shape, layout and parameter count; ShapeProblem where the
        analysis reports one (or where the parameters differ from the reference's)."""
        check_layouts(node, in_shapes, in_layouts)
        out, counts, *_ = apply_rules(node, in_shapes, rules)
        if min(out, default=1) < 1:
            raise ShapeProblem(f"output shape {list(out)} has an empty dim")
        ref = (self.reference_params or {}).get(node.name, counts.params)
        if counts.params != ref:
            raise ShapeProblem(
                f"{node.kind.name} would need {counts.params:,} parameters at this size, not "
                f"the {ref:,} it has at the spec's own input "
                f"{'x'.join(map(str, self.reference))}",
                hint="one set of weights serves every size: an adaptive or global pool before "
                     "the flatten makes the sizes free")
        return out, output_layout(node, in_shapes, in_layouts, out), counts.params

    def run(self, shape: Shape) -> Outcome:
        net = self.network_at(shape)
        rules = self.rules if net is self.network else {}
        result = Outcome({INPUT: tuple(shape)}, layouts={INPUT: net.input_layout})
        shapes, layouts = result.shapes, result.layouts
        for node in net.nodes.values():
            in_shapes = [shapes[i] for i in node.inputs]
            try:
                shapes[node.name], layouts[node.name], result.params[node.name] = \
                    self.node_output(node, in_shapes, [layouts[i] for i in node.inputs], rules)
            except ShapeProblem as problem:
                result.failure = Failure(node.name, problem, in_shapes)
                return result
        return result


def structural_period(network: Network, axes: tuple[int, ...], outcome: Outcome,
                      rules: dict) -> int:
    """A multiple of the period of every layer's sizes in the open size (the lcm over each
    layer's inputs, times its own size_period), from the network at a valid input."""
    periods = {INPUT: 1}
    for node in network.nodes.values():
        inherited = math.lcm(*(periods[i] for i in node.inputs))
        in_shapes = [outcome.shapes[i] for i in node.inputs]
        periods[node.name] = inherited * node.kind.size_period(node.cfg, in_shapes)
    return math.lcm(*periods.values())


@dataclass
class ScanResult:
    """One open size scanned: the exact valid set (periodic beyond `start`) and the network at
    the sizes evaluated."""
    name: str
    axes: tuple[int, ...]
    base: Shape                  # the input shape the scan varies (the other sizes fixed)
    lo: int
    hi: int | None
    period: int                  # the valid set's smallest period
    classes: tuple[int, ...]     # residues mod period valid from `start` on
    start: int                   # n >= start: valid exactly when n % period in classes
    extra: tuple[int, ...]       # valid sizes below start
    known_period: int            # the structural period of the shapes (a multiple of period)
    outcomes: dict[int, Outcome] # the sizes evaluated, valid or not
    checked_to: int              # exact up to here (every size scanned or proven)
    rebuilt: bool = False        # the layers read $in_shape: sizes checked one by one

    def valid(self, n: int) -> bool:
        if n < self.lo or (self.hi is not None and n > self.hi):
            return False
        return self.network_takes(n)

    def network_takes(self, n: int) -> bool:
        """Whether the network runs at n, whatever the declared range."""
        return n in self.extra or (n >= self.start and n % self.period in self.classes)

    @property
    def smallest(self) -> int | None:
        if self.extra:
            return self.extra[0]
        low = max(self.start, self.lo)
        for n in range(low, low + self.period):
            if self.valid(n):
                return n
        return None

    def valid_sizes(self, upto: int) -> list[int]:
        return [n for n in range(self.lo, upto + 1) if self.valid(n)]

    def shape_at(self, n: int) -> Shape:
        return with_size(self.base, self.axes, n)


def with_size(shape: Shape, axes: tuple[int, ...], n: int) -> Shape:
    return tuple(n if a in axes else s for a, s in enumerate(shape))


class Scanner:
    def __init__(self, prop: Propagator, name: str, axes: tuple[int, ...], base: Shape,
                 lo: int = 1, hi: int | None = None):
        self.prop, self.name, self.axes, self.base = prop, name, axes, tuple(base)
        self.lo, self.hi = lo, hi
        self.outcomes: dict[int, Outcome] = {}

    def at(self, n: int) -> Outcome:
        if n not in self.outcomes:
            self.outcomes[n] = self.prop.run(with_size(self.base, self.axes, n))
        return self.outcomes[n]

    def scan(self) -> ScanResult:
        prop = self.prop
        top = min(self.hi or CAP, CAP)
        if prop.network.at_input is not None:  # each size is a build: one by one, up to a cap
            top = min(top, REBUILT_CAP)
            known = {n: self.at(n).valid for n in range(1, top + 1)}
            return self.settle(known, 1, top, rebuilt=True)
        period = self.period(top)
        if period is None:  # nothing valid up to the cap
            return self.settle({n: False for n in range(1, top + 1)}, 1, top)
        known: dict[int, bool] = {}
        stable_from: dict[int, int] = {}
        for r in range(period):
            stable_from[r] = self.scan_class(r or period, period, top, known)
        last = max((v for v in stable_from.values() if v <= top), default=period)
        last = max([last] + [n for n, ok in known.items() if ok])  # isolated valid sizes too
        end = min(top, max(last, period) + 2 * period)
        for n in range(1, end + 1):  # the stable runs checked over two more periods
            if n not in known:
                known[n] = self.at(n).valid
            elif n >= stable_from[n % period] and not self.at(n).valid:
                raise InternalError(f"size {n} of {self.name} breaks the period {period} found "
                                    f"from {stable_from[n % period]} on")
        return self.settle(known, period, end)

    def period(self, top: int) -> int | None:
        """The structural period, from the network at a valid size (found scanning upwards)."""
        for n in (self.base[self.axes[0]], *range(1, top + 1)):
            outcome = self.at(n)
            if outcome.valid:
                net = self.prop.network
                return structural_period(net, self.axes, outcome, self.prop.rules)
            if n > 4096:
                break
        return None

    def scan_class(self, first: int, period: int, top: int, known: dict[int, bool]) -> int:
        """Scan the sizes first, first + period, ... until two in a row are valid (returns the
        first of them) or the class is dead up to top (returns top + 1)."""
        n, previous = first, None
        while n <= top:
            outcome = self.at(n)
            known[n] = outcome.valid
            if outcome.valid:
                if previous is not None and previous.valid:
                    return n - period
            elif previous is not None and not previous.valid and \
                    previous.failure.node == outcome.failure.node:
                passes = self.step_failing(outcome, previous, n, period, top)
                for m in range(n + period, (passes or top + 1), period):
                    known[m] = False
                if passes is None:
                    return top + 1
                n, previous = passes, None
                continue
            previous, n = outcome, n + period
        return top + 1

    def step_failing(self, outcome: Outcome, previous: Outcome, n: int, period: int,
                     top: int) -> int | None:
        """The next size of the class where the failing layer passes, found by running that
        layer alone: everything before it is valid at two sizes in a row, so its inputs grow
        by the same step each period."""
        name = outcome.failure.node
        node = self.prop.network.nodes[name]
        now, before = outcome.failure.in_shapes, previous.failure.in_shapes
        steps = [tuple(a - b for a, b in zip(x, y)) for x, y in zip(now, before)]
        if all(step == steps[0] for step in steps) and (len(steps) > 1 or not any(steps[0])):
            return None  # it sees the same inputs, or a join the same differences, forever
        in_layouts = [outcome.layouts[i] for i in node.inputs]
        k = 1
        while n + k * period <= min(top, STEP_CAP):
            shapes = [tuple(s + k * d for s, d in zip(x, step)) for x, step in zip(now, steps)]
            try:
                self.prop.node_output(node, shapes, in_layouts, {})
                return n + k * period
            except ShapeProblem:
                k += 1
        return None

    def settle(self, known: dict[int, bool], period: int, end: int,
               rebuilt: bool = False) -> ScanResult:
        """The valid set as the user would state it: its smallest period, the classes valid
        from `start` on, and the valid sizes below."""
        tail = [n for n in range(max(1, end - 2 * period + 1), end + 1)]
        smallest = period
        for d in sorted(d for d in range(1, period + 1) if period % d == 0):
            if all(known[n] == known[n + d] for n in tail if n + d <= end):
                smallest = d
                break
        classes = tuple(sorted({n % smallest for n in tail if known[n]}))
        start = end + 1
        while start - 1 >= 1 and known[start - 1] == ((start - 1) % smallest in classes):
            start -= 1
        if not classes:
            start = end + 1
        extra = tuple(n for n in range(1, start) if known[n])
        return ScanResult(self.name, self.axes, self.base, self.lo, self.hi, smallest, classes,
                          start, extra, period, self.outcomes, end, rebuilt)


def scan_open_sizes(network: Network, base: Shape | None = None) -> dict[str, ScanResult]:
    """Every open size of the network scanned, the others held at their base sizes (their
    probes, or `base`)."""
    reference = None
    refs = {s.reference for s in network.open_sizes.values()}
    if None not in refs and refs:
        reference = tuple(network.input_shape)
        for s in network.open_sizes.values():
            reference = with_size(reference, s.axes, s.reference)
    prop = Propagator(network, reference)
    base = tuple(base or network.input_shape)
    results = {}
    for size in network.open_sizes.values():
        results[size.name] = Scanner(prop, size.name, size.axes, base, size.min,
                                     size.max).scan()
    return results


# ---- formulas: a length as a function of the open size on its valid classes ---------------

@dataclass(frozen=True)
class Formula:
    """A length on the valid sizes of one open size: text such as 'ceil(H / 32)', 'H - 4' or
    'H / 2'; where no such form fits, text is None and `classes` gives it per class of the
    shapes' period P: for n = P k + r (n >= start), length = a k + b as {r: (a, b)}; below
    start, `below` lists the lengths."""
    text: str | None
    period: int = 1
    classes: tuple[tuple[int, int, int], ...] = ()   # (r, a, b)
    start: int = 1
    below: tuple[tuple[int, int], ...] = ()          # (n, length) for valid n < start

    def at(self, n: int) -> int | None:
        """The length at a valid size n, from the class table (no text needed)."""
        for m, v in self.below:
            if m == n:
                return v
        for r, a, b in self.classes:
            if n % self.period == r:
                return a * (n // self.period) + b
        return None


def length_formula(name: str, points: list[tuple[int, int]], period: int,
                   start: int = 1) -> Formula:
    """The simplest formula that gives every (n, length) point: a constant, an affine
    m * n + b (exact division allowed), or m * floor((n + a) / s) + b with s dividing the
    shapes' period."""
    if not points:
        return Formula(None)
    values = {v for _, v in points}
    if len(values) == 1:
        return Formula(str(values.pop()))
    (n0, v0), (n1, v1) = points[0], points[-1]
    exact = Fraction(v1 - v0, n1 - n0)
    if all(Fraction(v) == v0 + exact * (n - n0) for n, v in points):
        return Formula(affine_text(name, exact, v0 - exact * n0))
    for s in (d for d in range(2, period + 1) if period % d == 0):
        best = None
        for m in range(1, 4 * s + 1):
            for a in range(s):
                offsets = {v - m * ((n + a) // s) for n, v in points}
                if len(offsets) == 1:
                    text = floor_text(name, m, a, s, offsets.pop())
                    if best is None or len(text) < len(best):
                        best = text
            if best is not None:
                return Formula(best)
    return class_table(points, period, start)


def class_table(points: list[tuple[int, int]], period: int, start: int) -> Formula:
    """Per class r of the period: length = a * (n // P) + b from two sizes of the class."""
    by_class: dict[int, list[tuple[int, int]]] = {}
    for n, v in points:
        if n >= start:
            by_class.setdefault(n % period, []).append((n, v))
    classes = []
    for r, run in sorted(by_class.items()):
        (n0, v0), (n1, v1) = run[0], run[-1] if len(run) > 1 else (run[0][0] + period, run[0][1])
        a = (v1 - v0) // max((n1 - n0) // period, 1)
        classes.append((r, a, v0 - a * (n0 // period)))
    return Formula(None, period, tuple(classes), start,
                   tuple((n, v) for n, v in points if n < start))


def affine_text(name: str, slope: Fraction, offset: Fraction) -> str:
    if slope == 1:
        head = name
    elif slope.denominator == 1:
        head = f"{slope.numerator} * {name}"
    elif slope.numerator == 1:
        head = f"{name} / {slope.denominator}"
    else:
        head = f"{slope.numerator} * {name} / {slope.denominator}"
    if offset == 0:
        return head
    if slope.denominator != 1 and (offset * slope.denominator).denominator == 1:
        shift = offset * slope.denominator / slope.numerator
        if shift.denominator == 1:  # (H - 4) / 2
            return affine_text(f"({name} {sign(int(shift))})", slope, Fraction(0))
    return f"{head} {sign(offset)}"


def sign(value) -> str:
    return f"+ {value}" if value > 0 else f"- {-value}"


def floor_text(name: str, m: int, a: int, s: int, b: int) -> str:
    """m * floor((n + a) / s) + b, written with ceil when that reads shorter."""
    candidates = []
    # floor((n + a) / s) == ceil((n + a - s + 1) / s)
    for op, shift in (("floor", a), ("ceil", a - s + 1)):
        inner = f"{name} / {s}" if shift == 0 else f"({name} {sign(shift)}) / {s}"
        term = f"{op}({inner})"
        if m != 1:
            term = f"{m} * {term}"
        candidates.append(term if b == 0 else f"{term} {sign(b)}")
    return min(candidates, key=lambda t: (len(t), t.startswith("floor")))


def shape_formulas(result: ScanResult, node: str) -> list[Formula]:
    """Per output axis of the node, its length as a formula of the open size."""
    points = [(n, o.shapes[node]) for n, o in sorted(result.outcomes.items())
              if o.valid and result.network_takes(n)]
    if not points:
        return []
    return [length_formula(result.name, [(n, s[axis]) for n, s in points], result.known_period,
                           result.start)
            for axis in range(len(points[0][1]))]


# ---- counts: params, MACs and memory as polynomials of the open sizes ------------------------

def fit_polynomial(f, names: list[str], grids: dict[str, list[int]]) -> dict[tuple, Fraction]:
    """The polynomial in the open sizes through f at every point of the grid (a tensor-product
    Lagrange interpolation, exact in rationals): {exponents: coefficient}."""
    coeffs: dict[tuple, Fraction] = {}
    import itertools
    axes = [grids[n] for n in names]
    for point in itertools.product(*axes):
        value = Fraction(f(dict(zip(names, point))))
        if value == 0:
            continue
        # the Lagrange basis polynomial of this point, expanded per variable
        term: dict[tuple, Fraction] = {(): value}
        for xs, x in zip(axes, point):
            basis = lagrange_basis(xs, x)
            term = {k + (e,): c * b for k, c in term.items() for e, b in enumerate(basis)}
        for k, c in term.items():
            coeffs[k] = coeffs.get(k, Fraction(0)) + c
    return {k: c for k, c in coeffs.items() if c != 0}


def lagrange_basis(xs: list[int], x: int) -> list[Fraction]:
    """Coefficients (by power) of the polynomial that is 1 at x and 0 at the other xs."""
    poly = [Fraction(1)]
    for other in xs:
        if other == x:
            continue
        scale = Fraction(1, x - other)
        poly = [(poly[i - 1] if i > 0 else 0) * scale - (poly[i] if i < len(poly) else 0)
                * other * scale for i in range(len(poly) + 1)]
    return poly


def evaluate(coeffs: dict[tuple, Fraction], values: list[int]) -> Fraction:
    return sum((c * math.prod(v ** e for v, e in zip(values, k)) for k, c in coeffs.items()),
               Fraction(0))


__all__ = ["CAP", "Formula", "Outcome", "Propagator", "ScanResult", "Scanner", "evaluate",
           "fit_polynomial", "length_formula", "replace", "scan_open_sizes", "shape_formulas"]

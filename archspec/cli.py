"""The archspec command line: check, build, diagram, verify, export, schema, types.

check/diagram/schema/types never import torch (it takes seconds); build and verify do.
Exit status: 0 success, 1 a spec, file, checkpoint or environment error (a message, never a
traceback), 2 command-line usage, 70 a bug in archspec.
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import click

from .backends.report import PIPED_WIDTH
from .errors import MAX_SHOWN, ArchspecError, Diagnostic, InternalError, SpecError
from .fileio import STDIO
from .frontend.yaml_loader import Limits
from .units import human_bytes, parse_bytes

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
DEFAULT = Limits()


class PlainConsole:
    """What the commands use of rich's Console, for output that takes no styles (a pipe or a
    file, as rich itself decides below): importing rich would cost a sixth of `check`."""
    color_system = None

    def __init__(self, stderr: bool, width: int):
        self.stderr, self.width = stderr, width

    @property
    def file(self):
        return sys.stderr if self.stderr else sys.stdout

    def print(self, text: object = "", **_style) -> None:
        self.file.write(f"{text}\n")


def styles_possible(stream) -> bool:
    """rich's own test for a terminal (Console.is_terminal): its variables, else isatty."""
    if os.environ.get("TTY_COMPATIBLE", "") in ("0", "1"):
        return os.environ["TTY_COMPATIBLE"] == "1"
    if "FORCE_COLOR" in os.environ:
        return os.environ["FORCE_COLOR"] != ""
    try:
        return stream.isatty()
    except ValueError:  # a closed stream
        return False


def make_console(stderr: bool = False):
    """The terminal's width (or $COLUMNS); wide when piped, so logs and files keep long lines."""
    stream = sys.stderr if stderr else sys.stdout
    columns = os.environ.get("COLUMNS", "")
    if not styles_possible(stream):
        return PlainConsole(stderr, int(columns) if columns.isdigit() else PIPED_WIDTH)
    from rich.console import Console
    wide = not stream.isatty() and not columns.isdigit()
    return Console(stderr=stderr, width=PIPED_WIDTH if wide else None)


class SpecReader:
    """How every command reads its spec: the YAML limits, the params set with --set and the
    input shape given with --input."""

    def __init__(self, limits: Limits, params: dict, input_shape: list | None = None):
        self.limits, self.params, self.input_shape = limits, params, input_shape

    def read(self, spec: str):
        """The spec file at a path, or standard input for '-' (named <stdin> in diagnostics)."""
        from .frontend import load, load_stream
        if spec == STDIO:
            return load_stream(sys.stdin.buffer, limits=self.limits, filename="<stdin>",
                               params=self.params, params_from="--set",
                               input_shape=self.input_shape)
        return load(spec, limits=self.limits, params=self.params, params_from="--set",
                    input_shape=self.input_shape)

    def read_concrete(self, spec: str):
        """The spec at one input shape: open sizes at their default, the spec's own size, or
        the smallest valid (build, diagram, verify and export make one model)."""
        network = self.read(spec)
        if not network.open_sizes:
            return network
        from .backends.sizes_report import example_shape, network_at
        return network_at(network, example_shape(network))

    def analyze(self, spec: str, network, **options):
        """The analysis of the network read from spec; when sizes given with --input break it,
        the error also says which size rule they break."""
        from .analysis import analyze
        try:
            return analyze(network, **options)
        except SpecError as exc:
            if self.concrete_input:
                explain_given_input(self, spec, network, exc)
            raise

    @property
    def concrete_input(self) -> bool:
        """--input gave every size (no names)."""
        return self.input_shape is not None and all(isinstance(n, int) for n in self.input_shape)


def parse_input(ctx, param, value) -> list | None:
    if value is None:
        return None
    from .frontend.open_sizes import parse_input_text
    try:
        return parse_input_text(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def parse_sets(ctx, param, values) -> dict:
    from .frontend.params import parse_assignment
    params = {}
    for text in values:
        try:
            name, value = parse_assignment(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
        params[name] = value
    return params


def spec_options(func):
    """The options of every command that reads a spec; the command gets them as `reader`."""
    @functools.wraps(func)
    def command(*args, max_bytes, max_depth, max_nodes, set_params, input_shape, **kwargs):
        limits = Limits(max_bytes=max_bytes, max_depth=max_depth, max_nodes=max_nodes)
        return func(*args, reader=SpecReader(limits, set_params, input_shape), **kwargs)
    for option in (
        click.option("--input", "input_shape", metavar="SHAPE", default=None,
                     callback=parse_input, help="Replace the spec's input shape: 1x60x64, or "
                     "names for open sizes, 3xHxW (see 'archspec sizes')."),
        click.option("--set", "set_params", multiple=True, metavar="NAME=VALUE",
                     callback=parse_sets, help="Set a parameter declared under params: in the "
                     "spec (repeatable); VALUE is YAML: 50, true, [1, 2], text."),
        click.option("--max-bytes", type=click.IntRange(1), default=DEFAULT.max_bytes,
                     show_default=True, help="Refuse spec files larger than this."),
        click.option("--max-depth", type=click.IntRange(1), default=DEFAULT.max_depth,
                     show_default=True, help="Refuse YAML nested deeper than this."),
        click.option("--max-nodes", type=click.IntRange(1), default=DEFAULT.max_nodes,
                     show_default=True, help="Refuse YAML with more nodes (aliases expanded)."),
    ):
        command = option(command)
    return command


def read_lines(file: str | None) -> list[str] | None:
    try:
        path = Path(file or "")
        if path.is_file() and path.stat().st_size <= 10_000_000:
            return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        pass
    return None


def sources_of(exc: SpecError):
    """The SpecSources of the spec a SpecError is about, when known."""
    return exc.sources if exc.sources is not None else \
        exc.partial.network.source if exc.partial is not None else None


def print_diagnostics(diagnostics: list[Diagnostic], err, omitted: int = 0,
                      severity: str = "error", sources=None) -> None:
    """The first MAX_SHOWN diagnostics with their source lines (from the text that was loaded,
    each file's own: `sources`; else read from the file, once), then how many there are."""
    sys.stdout.flush()  # a partial table on stdout comes before the errors
    lines: dict[str | None, list[str] | None] = {}
    shown = diagnostics[:MAX_SHOWN]
    for d in shown:
        if d.file not in lines:
            known = getattr(sources, "lines_of", lambda file: None)(d.file)
            lines[d.file] = known if known is not None else read_lines(d.file)
        err.print(d.format(lines[d.file]), highlight=False, markup=False, soft_wrap=True)
    n = len(diagnostics) + omitted
    more = f" ({n - len(shown):,} more not shown)" if n > len(shown) else ""
    err.print(f"{n:,} {severity}{'s' if n != 1 else ''}{more}",
              style="bold red" if severity == "error" else "bold yellow", highlight=False)


def internal_failure(exc: InternalError) -> None:
    click.echo(str(exc), err=True)
    sys.exit(70)


def fail(message: str, hint: str | None = None) -> None:
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"  hint: {hint}", err=True)
    sys.exit(1)


@contextmanager
def reported_internal():
    """Our own bugs: say so and exit 70 (spec errors are left to the caller)."""
    try:
        yield
    except InternalError as exc:
        internal_failure(exc)


@contextmanager
def reported():
    """Every way a command can fail on the user's input ends as a message and exit 1 (70 for our
    own bugs), never a traceback."""
    try:
        yield
    except SpecError as exc:
        print_diagnostics(exc.diagnostics, make_console(stderr=True), exc.omitted,
                          sources=sources_of(exc))
        sys.exit(1)
    except InternalError as exc:
        internal_failure(exc)
    except ArchspecError as exc:  # files, checkpoints, devices, a missing torch, dot
        fail(exc.message, exc.hint)
    except OSError as exc:
        fail(f"cannot write '{exc.filename}': {exc.strerror}" if exc.filename else str(exc),
             "check that the output folder exists and is writable")


def refuse_overwrite(spec: str, output: str) -> None:
    if STDIO not in (spec, output) and Path(output).resolve() == Path(spec).resolve():
        raise SpecError(Diagnostic("refusing to overwrite the input spec", file=spec,
                                   hint="choose another output file"))


def refuse_overwrite_imports(network, output: str) -> None:
    """The files a spec imports are its input too."""
    for path in getattr(network.source, "paths", ()):
        refuse_overwrite(path, output)


# ---- files: specs in, checkpoints and pictures out (the rules are archspec.fileio's) ----------

def require_torch() -> None:
    from .backends import require_torch as _require_torch
    _require_torch()


def describe_output(output: str, size: int) -> str:
    return f"{'standard output' if output == STDIO else output} ({human_bytes(size)})"


def status_stream(output: str):
    """Where 'wrote ...' goes: stderr when the output itself went to standard output."""
    from .fileio import output_target
    try:
        return sys.stderr if output_target(output).how == "stream" else sys.stdout
    except ArchspecError:
        return sys.stdout


class ByteSize(click.ParamType):
    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            n = parse_bytes(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if n < 1:
            self.fail("must be at least 1 byte", param, ctx)
        return n


def weights_options(func):
    """--weights FILE and --skip NAME: load a state_dict into the compiled model (strictly, every
    problem located at its layer), leaving the skipped layers' fresh weights."""
    func = click.option("--skip", multiple=True, metavar="NAME",
                        help="With --weights: leave this layer or block (a state_dict prefix, "
                             "e.g. fc) out of loading; it keeps fresh weights. Repeatable.")(func)
    return click.option("--weights", metavar="FILE", default=None,
                        help="Load this state_dict (saved with torch.save; read with "
                             "weights_only=True, no code runs) into the model.")(func)


def check_skip_needs_weights(weights, skip) -> None:
    if skip and weights is None:
        raise click.UsageError("--skip leaves layers out of loading weights: it needs --weights")


def load_weights_into(model, analysis, weights, skip) -> dict[str, int] | None:
    """The weights file loaded into the model (WeightsError: nothing loaded), if one is given."""
    if weights is None:
        return None
    from .backends.weights import load_weights
    return load_weights(model, analysis.network, weights, skip)


def memory_option(what: str):
    return click.option("--max-memory", type=ByteSize(), default=None,
                        help=f"{what} (bytes, or 500MB, 2GiB; default: the memory available).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archspec", prog_name="archspec")
def main():
    """Check, compile and draw neural-network specs written in YAML.

    SPEC is a path, or - to read the spec from standard input.

    \b
    Exit status:
      0   success (every spec valid)
      1   a spec error, or a file, checkpoint or environment problem
          (missing or unreadable file, no torch, no space left, ...)
      2   command-line usage (an unknown option, a bad option value)
      70  a bug in archspec (please report it)"""


@main.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per spec on stdout.")
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True,
              help="Batch size for the memory figures.")
@click.option("--dtype", type=click.Choice(list(DTYPE_BYTES)), default="float32",
              show_default=True, help="Element type for the memory figures.")
@click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam"]), default="adam",
              show_default=True, help="Optimizer of the training-step memory estimate (its "
                                      "state: none, 1 or 2 copies of the trainable parameters).")
@spec_options
def check(specs, as_json, batch_size, dtype, optimizer, reader):
    """Validate specs and print every layer's shape, params, MACs and receptive field.

    Exit status 0 when every spec is valid, 1 when any has errors."""
    from .analysis import invalid_json
    from .backends.report import print_report
    out, err = make_console(), make_console(stderr=True)
    failed = False
    results = []
    for spec in specs:
        sizes = None
        try:
            with reported_internal():
                network = reader.read(spec)
                if network.open_sizes:  # the table at one valid size, then the open sizes
                    sizes = open_sizes_report(network, batch_size, dtype, optimizer)
                    network = sizes.example
                analysis = reader.analyze(spec, network, batch_size=batch_size,
                                          dtype_bytes=DTYPE_BYTES[dtype], optimizer=optimizer)
        except SpecError as exc:
            failed = True
            if as_json:
                doc = exc.partial.to_json() if exc.partial is not None else \
                    invalid_json(exc.spec_name, [])
                doc.update(file=spec, valid=False, errors=[d.to_json() for d in exc.diagnostics],
                           error_count=exc.count, warnings=doc.get("warnings", []))
                results.append(doc)
            else:
                if exc.partial is not None:
                    print_report(exc.partial, out, partial=True)
                print_diagnostics(exc.diagnostics, err, exc.omitted, sources=sources_of(exc))
            continue
        if as_json:
            results.append(dict(analysis.to_json(), file=spec, valid=True, error_count=0,
                                **({"sizes": sizes.json} if sizes else {})))
        else:
            print_report(analysis, out)
            if sizes:
                out.print(f"open sizes (the table above is at {sizes.at_text}):")
                for line in sizes.lines:
                    out.print(f"  {line}", highlight=False, markup=False)
            if analysis.warnings:  # shown, but the spec is valid: the exit status stays 0
                print_diagnostics(analysis.warnings, err, severity="warning",
                                  sources=analysis.network.source)
            if len(specs) > 1:
                out.print()
    if as_json:
        for doc in results:
            click.echo(json.dumps(doc))
    sys.exit(1 if failed else 0)


class OpenSizes:
    """check's view of a spec with open sizes: the sizes report, and the network at the
    size its table shows."""

    def __init__(self, report, example):
        from .backends.sizes_report import text_lines, to_json
        self.report, self.example = report, example
        lines = text_lines(report)[1:]  # the table gives the shapes at one size
        self.lines = lines[:lines.index("layer shapes:")]
        self.json = to_json(report)
        self.at_text = "x".join(str(v) for v in report.at.values())


def open_sizes_report(network, batch_size, dtype, optimizer) -> OpenSizes:
    from .backends.sizes_report import network_at, sizes_report
    report = sizes_report(network, batch_size=batch_size, dtype_bytes=DTYPE_BYTES[dtype],
                          optimizer=optimizer)
    return OpenSizes(report, network_at(network, report.at_shape))


def explain_given_input(reader: SpecReader, spec: str, network, exc: SpecError) -> None:
    """--input sizes that break the network: the error says which rule they break."""
    from .backends.sizes_report import explain_break
    if not exc.diagnostics or exc.diagnostics[0].layer is None or spec == STDIO:
        return
    try:
        own = SpecReader(reader.limits, reader.params).read(spec)
    except SpecError:
        return
    explain_break(own, tuple(network.input_shape), exc.diagnostics[0])


@main.command(name="sizes")
@click.argument("spec", metavar="SPEC")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True,
              help="Batch size for the memory figures.")
@click.option("--dtype", type=click.Choice(list(DTYPE_BYTES)), default="float32",
              show_default=True, help="Element type for the memory figures.")
@click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam"]), default="adam",
              show_default=True, help="Optimizer of the training-step memory estimate.")
@spec_options
def sizes_command(spec, as_json, batch_size, dtype, optimizer, reader):
    """Which input sizes SPEC accepts: per open size (names in the input, or every size along
    the map when the input is concrete) the valid set ('H % 32 == 0', 'any H >= 75'), the
    smallest, each layer's shape as a formula, and params, MACs and memory as formulas of the
    sizes, evaluated at the spec's sizes or those of --input.

    Exit status 1 when the sizes evaluated break the network (the error located at the layer)."""
    from .backends.sizes_report import open_spatial, sizes_report, text_lines, to_json
    out = make_console()
    with reported():
        network = reader.read(spec)
        at = None
        if reader.concrete_input and spec != STDIO:
            own = SpecReader(reader.limits, reader.params).read(spec)
            if len(own.input_shape) == len(network.input_shape) and \
                    own.input_shape[0] == network.input_shape[0]:
                opened = open_spatial(own)
                at = {n: network.input_shape[s.axes[0]] for n, s in opened.open_sizes.items()}
                network = opened
        network = open_spatial(network)
        report = sizes_report(network, at, batch_size=batch_size,
                              dtype_bytes=DTYPE_BYTES[dtype], optimizer=optimizer)
    if as_json:
        click.echo(json.dumps(dict(to_json(report), file=spec)))
    else:
        for line in text_lines(report):
            out.print(line, highlight=False, markup=False)
    if report.at_problem is not None:
        if not as_json:
            print_diagnostics([report.at_problem], make_console(stderr=True),
                              sources=network.source)
        sys.exit(1)


@main.command()
@click.argument("spec", metavar="SPEC")
@click.option("-o", "--output", required=True, metavar="FILE",
              help="Checkpoint file to write (.pt); - for standard output.")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda, ... or meta (build without allocating; nothing is saved).")
@memory_option("Refuse models whose parameters and buffers need more memory than this")
@click.option("--max-param-bytes", type=click.IntRange(1), default=None, metavar="N",
              help="The same limit in bytes (the option's first name).")
@weights_options
@spec_options
def build(spec, output, device, max_memory, max_param_bytes, weights, skip, reader):
    """Compile SPEC to PyTorch and save a checkpoint (spec text + initial weights, or the
    weights loaded with --weights).

    Load it back with archspec.load_checkpoint(FILE) or torch.load(FILE, weights_only=True).
    The free disk space is checked before writing; the file is written atomically. With
    --device meta, --weights is checked against the spec without allocating."""
    check_skip_needs_weights(weights, skip)
    limit = min((m for m in (max_memory, max_param_bytes) if m is not None), default=None)
    with reported():
        require_torch()
        network = reader.read_concrete(spec)
        analysis = reader.analyze(spec, network)  # located, with the size rule --input breaks
        written, params, loaded = build_checkpoint(analysis, spec, output, device, limit,
                                                   weights, skip)
    fresh = f" ({loaded['fresh']:,} left fresh: {', '.join(skip)})" if skip and loaded else ""
    origin = "" if loaded is None else f", {loaded['loaded']:,} tensors {'checked against' if written is None else 'loaded from'} {weights}{fresh}"
    if written is None:
        click.echo(f"built {network.name} on the meta device: {params:,} parameters{origin} "
                   "(nothing saved)")
    else:
        click.echo(f"wrote {describe_output(output, written)}: {network.name}, {params:,} "
                   f"parameters{origin} (load with archspec.load_checkpoint)",
                   file=status_stream(output))


def build_checkpoint(analysis, spec: str, output: str, device: str, max_memory: int | None,
                     weights: str | None = None, skip=()):
    """(bytes written or None on the meta device, parameter count, tensors loaded or None).
    Every refusal (output path, disk space, memory) comes before the model is allocated."""
    from .backends.checkpoint import estimated_checkpoint_bytes, save_checkpoint
    from .backends.pytorch.compiler import compile_network
    from .fileio import check_space, output_target
    network = analysis.network
    if device != "meta":
        refuse_overwrite(spec, output)
        refuse_overwrite_imports(network, output)
        target = output_target(output)
        if target.how == "atomic":
            check_space(output, os.path.dirname(target.path) or ".",
                        estimated_checkpoint_bytes(analysis))
    model = compile_network(analysis, device=device, max_memory=max_memory)
    loaded = load_weights_into(model, analysis, weights, skip)
    params = sum(p.numel() for p in model.parameters())
    return (None if device == "meta" else save_checkpoint(model, output)), params, loaded


@main.command()
@click.argument("spec", metavar="SPEC")
@click.option("-o", "--output", required=True, metavar="FILE",
              help="Picture to write (.svg, .png, .pdf, or .dot for DOT source); - for standard "
                   "output (with --format).")
@click.option("--format", "fmt", type=click.Choice(["svg", "png", "pdf", "dot"]), default=None,
              help="Output format (default: from the output file's suffix).")
@click.option("--depth", type=click.IntRange(0), default=None,
              help="Open blocks as clusters to this depth: 0 draws each top-level block as one "
                   "box, 1 opens top-level blocks only (default: every block, every layer).")
@click.option("--fold/--no-fold", default=True, show_default=True,
              help="Draw consecutive identical collapsed blocks as one box marked 'x N'.")
@click.option("--fuse", is_flag=True,
              help="One box per conv or dense layer with the norm and activation after it "
                   "('conv 3x3, 64 + BN + ReLU').")
@click.option("--params", is_flag=True, help="Show every layer's parameter count.")
@click.option("--edge-shapes", is_flag=True,
              help="Write the tensor shape on every edge (default: on the edge leaving a block).")
@click.option("--rankdir", type=click.Choice(["TB", "LR"], case_sensitive=False), default="TB",
              show_default=True, help="Top to bottom or left to right.")
@click.option("--dpi", type=click.IntRange(24, 1200), default=None,
              help="PNG resolution (graphviz default 96).")
@click.option("--no-legend", is_flag=True, help="Leave out the colour legend.")
@click.option("--dot", "dot_program", default=None, metavar="PATH",
              help="graphviz's dot program (default: $ARCHSPEC_DOT, else dot on the PATH).")
@spec_options
def diagram(spec, output, fmt, depth, fold, fuse, params, edge_shapes, rankdir, dpi, no_legend,
            dot_program, reader):
    """Draw SPEC as a block diagram with graphviz (SVG, PNG, PDF or DOT source).

    Boxes are layers coloured by family, clusters are blocks; dashed orange edges are skip
    connections. A drawing too long for a page is drawn with a warning that names a --depth
    that fits. The file is written only when drawing succeeded."""
    from .backends.diagram import DiagramTooLong, render
    from .backends.diagram.rendering import layer_cap, output_format, too_many_layers
    from .fileio import output_target
    from .frontend.expand import TooManyLayers, layers_at_most
    with reported(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DiagramTooLong)
        refuse_overwrite(spec, output)
        output_target(output)  # refuse a directory or a device before drawing
        try:  # a picture too large for dot is refused before the spec is fully expanded
            with layers_at_most(layer_cap(depth, output_format(output, fmt))):
                network = reader.read_concrete(spec)
        except TooManyLayers as exc:
            raise too_many_layers(exc.count) from None
        refuse_overwrite_imports(network, output)
        analysis = reader.analyze(spec, network)
        data = render(analysis, output, format=fmt, depth=depth, fold=fold, fuse=fuse,
                      params=params, edge_shapes=edge_shapes, rankdir=rankdir.upper(),
                      legend=not no_legend, dpi=dpi, dot=dot_program)
    for warning in caught:
        if isinstance(warning.message, DiagramTooLong):
            click.echo(f"warning: {warning.message.message}", err=True)
            click.echo(f"  hint: {warning.message.hint}", err=True)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    click.echo(f"wrote {describe_output(output, size)}", file=status_stream(output))


@main.command()
@click.argument("spec", metavar="SPEC")
@click.option("--device", default="cpu", show_default=True,
              help="Run on this device; meta checks shapes and counts without allocating.")
@click.option("--batch-size", type=click.IntRange(1), default=2, show_default=True)
@memory_option("Refuse runs whose parameters, buffers, input and layer outputs need more memory "
               "than this")
@weights_options
@spec_options
def verify(spec, device, batch_size, max_memory, weights, skip, reader):
    """Compile SPEC, run it once, and compare every layer's output shape, parameters and buffers
    with the static analysis (forward hooks on every module). Exit 1 on any difference.

    A run that would not fit in memory is refused before anything is allocated. With
    --weights, the model runs with those weights (loaded strictly, as build does)."""
    check_skip_needs_weights(weights, skip)
    with reported():
        require_torch()
        analysis = reader.analyze(spec, reader.read_concrete(spec))
        from .backends.verify import mismatches
        problems = mismatches(analysis, device=device, batch_size=batch_size,
                              max_memory=max_memory, weights=weights, skip=skip)
    for line in problems:
        click.echo(f"mismatch: {line}", err=True)
    if problems:
        sys.exit(1)
    loaded = "" if weights is None else f", weights from {weights}"
    click.echo(f"{analysis.network.name}: the analysis equals PyTorch on {len(analysis.layers)} "
               f"layers ({analysis.params:,} parameters, {analysis.buffers:,} buffers, {device}"
               f"{loaded})")


@main.command()
def schema():
    """Print the JSON Schema of the spec language (for YAML language servers)."""
    from .frontend.schema import spec_json_schema
    click.echo(json.dumps(spec_json_schema(), indent=2))


@main.command(name="types")
def list_types():
    """List the layer and block types with their fields."""
    from .layers import COMPOSITES, REGISTRY
    for name, kind in sorted({**REGISTRY, **COMPOSITES}.items()):
        own = list(kind.Config.__annotations__)  # the kind's own fields first, shared ones after
        names = sorted(kind.Config.model_fields, key=lambda f: (f not in own, own.index(f)
                                                                if f in own else 0))
        fields = [kind.Config.model_fields[f].alias or f for f in names
                  if f not in ("type", "name", "from_", "trainable")]
        click.echo(f"{name:22} {', '.join(fields)}")


@main.command(name="export")
@click.argument("spec", metavar="SPEC")
@click.option("--to", "target", required=True,
              type=click.Choice(["python", "onnx", "torch-export"]),
              help="python: standalone PyTorch source (one nn.Module class); onnx: an ONNX "
                   "model; torch-export: a torch.export program (.pt2). The ONNX and .pt2 files "
                   "hold freshly initialised weights (or those of --weights), traced in eval "
                   "mode with a dynamic batch.")
@click.option("-o", "--output", required=True, metavar="FILE",
              help="File to write; - for standard output.")
@memory_option("Refuse models whose parameters and buffers need more memory than this")
@weights_options
@spec_options
def export_command(spec, target, output, max_memory, weights, skip, reader):
    """Export SPEC to a format that runs without archspec: Python source, ONNX or torch.export.

    A spec with errors is refused with the same located messages as 'archspec check'. The
    file is written atomically; the Python source loads the state_dict of archspec.compile."""
    from .backends.export import export_analysis
    check_skip_needs_weights(weights, skip)
    if target == "python" and weights is not None:
        raise click.UsageError("--weights goes into --to onnx or torch-export: Python source "
                               "holds no weights (load the file into its module with "
                               "load_state_dict)")
    with reported():
        refuse_overwrite(spec, output)
        from .fileio import output_target
        output_target(output)  # refuse a directory or a device before any work
        network = reader.read_concrete(spec)
        refuse_overwrite_imports(network, output)
        analysis = reader.analyze(spec, network)
        require_torch()
        written = export_analysis(analysis, target, output,
                                  spec_file=None if spec == STDIO else spec, max_memory=max_memory,
                                  weights=weights, skip=skip)
    click.echo(f"wrote {describe_output(output, written)}: {network.name} as {target}",
               file=status_stream(output))


def run() -> None:
    """The `archspec` program: main(), then exit without tearing down the interpreter. Freeing
    a 100,000-layer network object by object at shutdown took 1.8 s of a 12 s build, and a
    process that exits gives its memory back at once. Output is flushed and atexit handlers
    run first, as at a normal exit; in-process callers (tests, CliRunner) use main()."""
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code
    if code is not None and not isinstance(code, int):  # sys.exit("message"), as Python does
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what Python reports at exit as 120
            code = code or 120
    os._exit(code or 0)


if __name__ == "__main__":
    run()

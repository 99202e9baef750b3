"""The archspec command line: check, build, diagram, schema, types.

check/diagram/schema/types never import torch (it takes seconds); build does.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console

from .errors import DeviceUnavailable, Diagnostic, InternalError, SpecError
from .spec.yaml_loader import Limits

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
DEFAULT = Limits()


def make_console(stderr: bool = False) -> Console:
    """Wide when piped, so tables never truncate names in logs and files."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


def limit_options(func):
    for option in (
        click.option("--max-bytes", type=click.IntRange(1), default=DEFAULT.max_bytes,
                     show_default=True, help="Refuse spec files larger than this."),
        click.option("--max-depth", type=click.IntRange(1), default=DEFAULT.max_depth,
                     show_default=True, help="Refuse YAML nested deeper than this."),
        click.option("--max-nodes", type=click.IntRange(1), default=DEFAULT.max_nodes,
                     show_default=True, help="Refuse YAML with more nodes (aliases expanded)."),
    ):
        func = option(func)
    return func


def make_limits(max_bytes: int, max_depth: int, max_nodes: int) -> Limits:
    return Limits(max_bytes=max_bytes, max_depth=max_depth, max_nodes=max_nodes)


def source_lines(diagnostic: Diagnostic) -> list[str] | None:
    try:
        path = Path(diagnostic.file or "")
        if path.is_file() and path.stat().st_size <= 10_000_000:
            return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        pass
    return None


def print_diagnostics(diagnostics: list[Diagnostic], err: Console) -> None:
    sys.stdout.flush()  # a partial table on stdout comes before the errors
    for d in diagnostics:
        err.print(d.format(source_lines(d)), highlight=False, markup=False, soft_wrap=True)
    n = len(diagnostics)
    err.print(f"{n} error{'s' if n != 1 else ''}", style="bold red", highlight=False)


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
    from .backends.diagram import RenderError
    try:
        yield
    except SpecError as exc:
        print_diagnostics(exc.diagnostics, make_console(stderr=True))
        sys.exit(1)
    except InternalError as exc:
        internal_failure(exc)
    except RenderError as exc:
        fail(exc.message, exc.hint)
    except DeviceUnavailable as exc:
        fail(str(exc), "use --device cpu, or meta to build without allocating")
    except OSError as exc:
        fail(f"cannot write '{exc.filename}': {exc.strerror}" if exc.filename else str(exc),
             "check that the output folder exists and is writable")


def refuse_overwrite(spec: str, output: str) -> None:
    if Path(output).resolve() == Path(spec).resolve():
        raise SpecError(Diagnostic("refusing to overwrite the input spec", file=spec,
                                   hint="choose another output file"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archspec", prog_name="archspec")
def main():
    """Check, compile and draw neural-network specs written in YAML."""


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per spec on stdout.")
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True,
              help="Batch size for the activation-memory estimate.")
@click.option("--dtype", type=click.Choice(list(DTYPE_BYTES)), default="float32",
              show_default=True, help="Element type for the memory estimates.")
@limit_options
def check(specs, as_json, batch_size, dtype, max_bytes, max_depth, max_nodes):
    """Validate specs and print every layer's shape, params, MACs and receptive field.

    Exit status 0 when every spec is valid, 1 when any has errors."""
    from .analysis import analyze
    from .backends.report import print_report
    from .spec import load
    out, err = make_console(), make_console(stderr=True)
    limits = make_limits(max_bytes, max_depth, max_nodes)
    failed = False
    results = []
    for spec in specs:
        try:
            with reported_internal():
                analysis = analyze(load(spec, limits=limits), batch_size=batch_size,
                                   dtype_bytes=DTYPE_BYTES[dtype])
        except SpecError as exc:
            failed = True
            if as_json:
                doc = exc.partial.to_json() if exc.partial is not None else {"name": None}
                doc.update(file=spec, valid=False, errors=[d.to_json() for d in exc.diagnostics])
                results.append(doc)
            else:
                if exc.partial is not None:
                    print_report(exc.partial, out, partial=True)
                print_diagnostics(exc.diagnostics, err)
            continue
        if as_json:
            results.append(dict(analysis.to_json(), file=spec, valid=True))
        else:
            print_report(analysis, out)
            if len(specs) > 1:
                out.print()
    if as_json:
        for doc in results:
            click.echo(json.dumps(doc))
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint file to write (.pt).")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda, ... or meta (build without allocating; nothing is saved).")
@click.option("--max-param-bytes", type=click.IntRange(1), default=None,
              help="Allow models this large (default: the memory available).")
@limit_options
def build(spec, output, device, max_param_bytes, max_bytes, max_depth, max_nodes):
    """Compile SPEC to PyTorch and save a checkpoint (spec text + initial weights).

    Load it back with archspec.load_checkpoint(FILE) or torch.load(FILE, weights_only=True)."""
    from .spec import load
    with reported():
        text = _read_spec_text(spec, max_bytes)
        network = load(spec, limits=make_limits(max_bytes, max_depth, max_nodes))
        refuse_overwrite(spec, output)
        from . import compile as compile_spec
        from .backends.torch_backend import save_checkpoint
        from .fileio import atomic_write
        model = compile_spec(network, device=device, max_param_bytes=max_param_bytes)
        n = sum(p.numel() for p in model.parameters())
        if device == "meta":
            click.echo(f"built {network.name} on the meta device: {n:,} parameters "
                       "(nothing saved)")
            return
        atomic_write(output, lambda f: save_checkpoint(model, text, f))
    click.echo(f"wrote {output}: {network.name}, {n:,} parameters "
               f"(load with archspec.load_checkpoint)")


def _read_spec_text(spec: str, max_bytes: int) -> str:
    path = Path(spec)
    if path.is_file() and path.stat().st_size <= max_bytes:
        return path.read_text(encoding="utf-8", errors="replace")
    return ""


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Picture to write (.svg, .png, .pdf, or .dot for DOT source).")
@click.option("--format", "fmt", type=click.Choice(["svg", "png", "pdf", "dot"]), default=None,
              help="Output format (default: from the output file's suffix).")
@click.option("--depth", type=click.IntRange(0), default=None,
              help="Open blocks as clusters to this depth: 0 draws each top-level block as one "
                   "box, 1 opens top-level blocks only (default: every block, every layer).")
@click.option("--fold/--no-fold", default=True, show_default=True,
              help="Draw consecutive identical collapsed blocks as one box marked 'x N'.")
@click.option("--params", is_flag=True, help="Show every layer's parameter count.")
@click.option("--rankdir", type=click.Choice(["TB", "LR"], case_sensitive=False), default="TB",
              show_default=True, help="Top to bottom or left to right.")
@click.option("--dpi", type=click.IntRange(24, 1200), default=None,
              help="PNG resolution (graphviz default 96).")
@click.option("--no-legend", is_flag=True, help="Leave out the colour legend.")
@click.option("--dot", "dot_program", default=None, metavar="PATH",
              help="graphviz's dot program (default: $ARCHSPEC_DOT, else dot on the PATH).")
@limit_options
def diagram(spec, output, fmt, depth, fold, params, rankdir, dpi, no_legend, dot_program,
            max_bytes, max_depth, max_nodes):
    """Draw SPEC as a block diagram with graphviz (SVG, PNG, PDF or DOT source).

    Boxes are layers coloured by family, clusters are blocks; dashed orange edges are skip
    connections. The file is written only when drawing succeeded."""
    from .analysis import analyze
    from .backends.diagram import render
    from .spec import load
    with reported():
        refuse_overwrite(spec, output)
        analysis = analyze(load(spec, limits=make_limits(max_bytes, max_depth, max_nodes)))
        render(analysis, output, format=fmt, depth=depth, fold=fold, params=params,
               rankdir=rankdir.upper(), legend=not no_legend, dpi=dpi, dot=dot_program)
    click.echo(f"wrote {output}")


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--device", default="cpu", show_default=True,
              help="Run on this device; meta checks shapes and counts without allocating.")
@click.option("--batch-size", type=click.IntRange(1), default=2, show_default=True)
@limit_options
def verify(spec, device, batch_size, max_bytes, max_depth, max_nodes):
    """Compile SPEC, run it once, and compare every layer's output shape, parameters and buffers
    with the static analysis (forward hooks on every module). Exit 1 on any difference."""
    from .analysis import analyze
    from .spec import load
    with reported():
        analysis = analyze(load(spec, limits=make_limits(max_bytes, max_depth, max_nodes)))
        from .backends.verify import mismatches
        problems = mismatches(analysis, device=device, batch_size=batch_size)
    for line in problems:
        click.echo(f"mismatch: {line}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{analysis.network.name}: the analysis equals PyTorch on {len(analysis.layers)} "
               f"layers ({analysis.params:,} parameters, {analysis.buffers:,} buffers, {device})")


@main.command()
def schema():
    """Print the JSON Schema of the spec language (for YAML language servers)."""
    from .spec.schema import spec_json_schema
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


if __name__ == "__main__":
    main()

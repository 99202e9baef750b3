"""Squeeze-and-excitation: a product of a feature map with a per-channel gate (a global pool's
descendant) keeps the feature map's receptive field, with a note that the gate adds global
context; later layers keep theirs too."""
from __future__ import annotations

import archspec

SE = """name: se
input: [8, 16, 16]
layers:
  - {type: conv, name: c, out_channels: 8, kernel_size: 3, padding: 1}
  - {type: adaptive_avg_pool, name: squeeze, output_size: 1, from: c}
  - {type: conv, name: reduce, out_channels: 2, kernel_size: 1, activation: relu}
  - {type: conv, name: expand, out_channels: 8, kernel_size: 1, activation: sigmoid}
  - {type: multiply, name: scaled, from: [c, expand]}
  - {type: conv, name: after, out_channels: 8, kernel_size: 3, padding: 1}
  - {type: max_pool, name: pool, kernel_size: 2}
"""


def field(analysis, name):
    rf = analysis.layers[name].receptive_field
    return None if rf is None else (rf.size, rf.stride, rf.padding)


def test_squeeze_and_excitation_keeps_the_spatial_paths_field():
    analysis = archspec.analyze(archspec.loads(SE))
    # derived by hand: a 3x3 conv (pad 1) sees 3 pixels; a second one 3 + 2 = 5; a 2x2/2 pool
    # on top 5 + 1 * 1 = 6 wide with stride 2; padding 1 throughout
    assert field(analysis, "c") == ((3, 3), (1, 1), (1, 1))
    assert field(analysis, "scaled") == ((3, 3), (1, 1), (1, 1))
    assert field(analysis, "after") == ((5, 5), (1, 1), (2, 2))
    assert field(analysis, "pool") == ((6, 6), (2, 2), (2, 2))
    [note] = analysis.layers["scaled"].notes
    assert note == ("'sigmoid1' (8x1x1) is a gate that adds global context; the field shown is "
                    "that of the spatial path")


def test_the_table_shows_the_field_and_the_note():
    from click.testing import CliRunner

    from archspec.cli import main
    runner = CliRunner()
    with runner.isolated_filesystem():
        with open("se.yaml", "w") as f:
            f.write(SE)
        result = runner.invoke(main, ["check", "se.yaml"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "3 /1 *" in rows["scaled"] and "5 /1" in rows["after"] and "6 /2" in rows["pool"]
    assert "* scaled: 'sigmoid1' (8x1x1) is a gate that adds global context" in result.stdout


def test_a_product_of_two_maps_still_merges_their_fields():
    analysis = archspec.analyze(archspec.loads("""name: t
input: [1, 16, 16]
layers:
  - {type: conv, name: small, out_channels: 2, kernel_size: 3, padding: 1}
  - {type: conv, name: big, out_channels: 2, kernel_size: 5, padding: 2, from: input}
  - {type: multiply, from: [small, big]}
"""))
    assert field(analysis, "mul1") == ((5, 5), (1, 1), (2, 2))  # the union: the 5x5 window
    assert analysis.layers["mul1"].notes == []

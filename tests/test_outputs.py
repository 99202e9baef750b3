"""Several outputs: a segmentation head and a classification head on one trunk."""
from __future__ import annotations

import torch

import archspec

SPEC = """
name: two_heads
input: [3, 16, 16]
layers:
  - {type: conv, name: trunk, out_channels: 8, kernel_size: 3, padding: same, activation: relu}
  - {type: conv, name: seg, out_channels: 2, kernel_size: 1, from: trunk}
  - {type: global_avg_pool, from: trunk}
  - {type: dense, name: cls, out_features: 5}
outputs: [seg, cls]
"""


def test_two_outputs_in_order():
    a = archspec.analyze(archspec.loads(SPEC))
    assert a.output_shapes == [(2, 16, 16), (5,)]
    # trunk 3*8*9 + 8, seg 8*2 + 2, cls 8*5 + 5
    assert a.params == 224 + 18 + 45
    seg, cls = archspec.compile(a.network)(torch.randn(4, 3, 16, 16))
    assert tuple(seg.shape) == (4, 2, 16, 16) and tuple(cls.shape) == (4, 5)
    assert a.to_json()["output_shape"] == [[2, 16, 16], [5]]

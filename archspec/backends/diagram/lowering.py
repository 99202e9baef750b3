"""How each layer kind is drawn: the diagram back end's lowering table.

Every registered kind has one row (tests/test_lowering_tables.py checks it): the box's outline
shape and, for ``--fuse``, whether its box takes in the norm and activation after it
(``absorbs``) or what it is called inside such a box (``fused``, e.g. "BN"). The rest comes
from what the analysis resolved: the text (the layer's label and output shape) and the fill
(the colour of the kind's family).
"""
from __future__ import annotations

from dataclasses import dataclass

# Fill colour per family (pastel, readable with black text, distinct in grey print thanks to
# differing lightness).
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
    "attention": "#eebefa",
    "recurrent": "#96f2d7",
    "learned": "#d8f5a2",
}


@dataclass(frozen=True)
class Drawing:
    shape: str = "box"            # graphviz node shape (rounded by the default style)
    absorbs: bool = False         # --fuse: its box also stands for the norm/activation after it
    fused: str | None = None      # --fuse: its name inside another kind's box; None: never fused


LOWERING: dict[str, Drawing] = {
    # convolutions and dense layers take in the batch norm and activation that follow them
    "conv": Drawing(absorbs=True),
    "depthwise_conv": Drawing(absorbs=True),
    "conv_transpose": Drawing(absorbs=True),
    "dense": Drawing(absorbs=True),
    "projection": Drawing(),   # its label already says "+ bn"
    "batch_norm": Drawing(fused="BN"),
    "local_response_norm": Drawing(fused="LRN"),
    "layer_norm": Drawing(fused="LN"),
    "group_norm": Drawing(fused="GN"),
    "instance_norm": Drawing(fused="IN"),
    "relu": Drawing(fused="ReLU"),
    "leaky_relu": Drawing(fused="LeakyReLU"),
    "relu6": Drawing(fused="ReLU6"),
    "elu": Drawing(fused="ELU"),
    "gelu": Drawing(fused="GELU"),
    "silu": Drawing(fused="SiLU"),
    "swish": Drawing(fused="swish"),
    "mish": Drawing(fused="Mish"),
    "softplus": Drawing(fused="Softplus"),
    "prelu": Drawing(fused="PReLU"),
    "hardswish": Drawing(fused="Hardswish"),
    "hardsigmoid": Drawing(fused="Hardsigmoid"),
    "sigmoid": Drawing(fused="sigmoid"),
    "tanh": Drawing(fused="tanh"),
    "softmax": Drawing(fused="softmax"),
    "log_softmax": Drawing(fused="log-softmax"),
    "identity": Drawing(),
    "dropout": Drawing(),
    "stochastic_depth": Drawing(),
    "flatten": Drawing(),
    "permute": Drawing(),
    "transpose": Drawing(),
    "slice": Drawing(),
    "index": Drawing(),
    "reshape": Drawing(),
    "squeeze": Drawing(),
    "unsqueeze": Drawing(),
    "max_pool": Drawing(),
    "avg_pool": Drawing(),
    "adaptive_avg_pool": Drawing(),
    "adaptive_max_pool": Drawing(),
    "global_avg_pool": Drawing(),
    "global_max_pool": Drawing(),
    "upsample": Drawing(),
    "pad": Drawing(),
    "pixel_shuffle": Drawing(),
    "pixel_unshuffle": Drawing(),
    "channel_shuffle": Drawing(),
    "multi_head_attention": Drawing(),
    "transformer_encoder_layer": Drawing(),
    "lstm": Drawing(),
    "gru": Drawing(),
    "parameter": Drawing(),
    "layer_scale": Drawing(),
    "embedding": Drawing(),
    # merges are ovals, so the points where paths meet stand out from the layers
    "add": Drawing(shape="oval"),
    "multiply": Drawing(shape="oval"),
    "concat": Drawing(shape="oval"),
}

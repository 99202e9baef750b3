"""Property tests: random valid multi-path specs, checked against PyTorch and brute force.

The strategies below build specs as plain dicts and track every tensor shape with their own
arithmetic (PyTorch's documented formulas, written out here rather than imported from
archspec), so each generated spec is valid by construction and its output shape is known.
Then:
  * the static analysis must agree with PyTorch running the compiled model (shapes, params,
    buffers, layer by layer), with this file's shape tracking, and with MACs read off the
    runtime weights;
  * receptive fields must agree with the gradient support of single output units.
"""
from __future__ import annotations

import math

import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

import archspec
from archspec.backends.verify import mismatches

SETTINGS = {"deadline": None,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The tensors here are tiny: extra threads only add synchronisation, which gets very slow
    when another process holds a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- shape arithmetic (PyTorch's formulas) -------------------------------------------------

def window_len(n: int, k: int, s: int, lo: int, hi: int, d: int = 1, ceil: bool = False) -> int:
    """Conv/pool output length; ceil_mode drops a last window starting in the right padding."""
    span = n + lo + hi - d * (k - 1) - 1
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= n + lo:
        out -= 1
    return out


def same_pads(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's 'same': output ceil(n / s), the odd pad on the right."""
    total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def one_or_list(draw, values: list[int]):
    """Write a per-dim value as a single int when all dims agree (and sometimes a list anyway)."""
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return list(values)


def divisors(n: int) -> list[int]:
    return [g for g in range(1, n + 1) if n % g == 0]


# ---- layer generators: each returns (item, output shape) ----------------------------------

class Gen:
    """Draws layers for a given input shape. `aligned` (a stride) restricts windows to centred
    padding, so parallel branches built with the same stride end with the same size."""

    def __init__(self, draw, rf_only: bool = False):
        self.draw = draw
        self.rf_only = rf_only   # receptive-field specs: convs and average pools only

    def window(self, shape, aligned: int | None, max_kernel: int = 5, dilate: bool = True):
        """kernel, stride, dilation and padding per dim, plus the padding as written."""
        draw, nd = self.draw, len(shape) - 1
        if aligned is not None:
            k = [draw(st.sampled_from([1, 3, 5][:1 + max_kernel // 2])) for _ in range(nd)]
            d = [draw(st.integers(1, 2)) if dilate else 1 for _ in range(nd)]
            s = [aligned] * nd
            if draw(st.booleans()):
                pads = [same_pads(n, ki, si, di) for n, ki, si, di in zip(shape[1:], k, s, d)]
                return k, s, d, pads, "same"
            pads = [(di * (ki - 1) // 2,) * 2 for ki, di in zip(k, d)]
            return k, s, d, pads, one_or_list(draw, [p for p, _ in pads])
        k = [draw(st.integers(1, max_kernel)) for _ in range(nd)]
        s = [draw(st.integers(1, 3)) for _ in range(nd)]
        d = [draw(st.integers(1, 3)) if dilate and draw(st.booleans()) else 1 for _ in range(nd)]
        choice = draw(st.sampled_from(["int", "list", "same", "valid"]))
        if choice == "same":
            pads = [same_pads(n, ki, si, di) for n, ki, si, di in zip(shape[1:], k, s, d)]
            return k, s, d, pads, "same"
        if choice == "valid":
            return k, s, d, [(0, 0)] * nd, "valid"
        p = [draw(st.integers(0, di * (ki - 1) // 2 + 1)) for ki, di in zip(k, d)]
        if choice == "int":
            p = [p[0]] * nd
        return k, s, d, [(q, q) for q in p], one_or_list(draw, p)

    def conv(self, shape, aligned=None):
        draw, c = self.draw, shape[0]
        k, s, d, pads, written = self.window(shape, aligned)
        out = [window_len(n, ki, si, lo, hi, di)
               for n, ki, si, di, (lo, hi) in zip(shape[1:], k, s, d, pads)]
        if min(out) < 1:  # the window does not fit: 'same' always does
            pads = [same_pads(n, ki, si, di) for n, ki, si, di in zip(shape[1:], k, s, d)]
            written = "same"
            out = [-(-n // si) for n, si in zip(shape[1:], s)]
        groups = draw(st.sampled_from(divisors(c)))
        c_out = groups * draw(st.integers(1, max(1, 6 // groups)))
        item = {"type": "conv", "out_channels": c_out, "kernel_size": one_or_list(draw, k),
                "stride": one_or_list(draw, s), "padding": written}
        if set(d) != {1}:
            item["dilation"] = one_or_list(draw, d)
        if groups > 1:
            item["groups"] = groups
        if draw(st.booleans()):
            item["bias"] = False
        if not self.rf_only and all(max(lo, hi) < n for n, (lo, hi) in zip(shape[1:], pads)) \
                and any(lo or hi for lo, hi in pads) and draw(st.integers(0, 3)) == 0:
            item["padding_mode"] = draw(st.sampled_from(["reflect", "replicate", "circular"]))
        return item, (c_out, *out)

    def depthwise(self, shape, aligned=None):
        draw = self.draw
        item, out = self.conv(shape, aligned)
        mult = draw(st.integers(1, 2))
        fields = {f: item[f] for f in ("kernel_size", "stride", "padding", "dilation", "bias")
                  if f in item}
        if draw(st.booleans()):
            return ({"type": "depthwise_conv", "depth_multiplier": mult, **fields},
                    (shape[0] * mult, *out[1:]))
        c_out = draw(st.integers(1, 6))
        fields.pop("bias", None)
        return ({"type": "separable_conv", "out_channels": c_out, "depth_multiplier": mult,
                 **fields}, (c_out, *out[1:]))

    def pool(self, shape, aligned=None):
        draw = self.draw
        kind = "avg_pool" if self.rf_only else draw(st.sampled_from(["max_pool", "avg_pool"]))
        k, s, d, pads, written = self.window(shape, aligned, max_kernel=4,
                                             dilate=kind == "max_pool")
        if written != "same":  # PyTorch: padding at most half the (undilated) kernel
            pads = [(min(lo, ki // 2),) * 2 for (lo, _), ki in zip(pads, k)]
            written = one_or_list(draw, [lo for lo, _ in pads])
        ceil = aligned is None and draw(st.booleans())
        out = [window_len(n, ki, si, lo, hi, di, ceil)
               for n, ki, si, di, (lo, hi) in zip(shape[1:], k, s, d, pads)]
        too_small = kind == "avg_pool" and len(k) == 3 and any(  # PyTorch's avg_pool3d limit
            (n if lo == hi else n + lo + hi) < ki for n, ki, (lo, hi) in zip(shape[1:], k, pads))
        if min(out) < 1 or too_small:
            return self.conv(shape, aligned) if aligned else self.activation(shape)
        item = {"type": kind, "kernel_size": one_or_list(draw, k), "padding": written}
        if s != k or draw(st.booleans()):
            item["stride"] = one_or_list(draw, s)
        if set(d) != {1}:
            item["dilation"] = one_or_list(draw, d)
        if ceil:
            item["ceil_mode"] = True
        if kind == "avg_pool" and draw(st.booleans()):
            item["count_include_pad"] = False
        return item, (shape[0], *out)

    def activation(self, shape):
        if self.rf_only:
            return {"type": "identity"}, shape
        name = self.draw(st.sampled_from(["relu", "tanh", "gelu", "relu6", "leaky_relu",
                                          "silu", "batch_norm", "dropout", "softmax",
                                          "layer_scale", "layer_norm", "stochastic_depth",
                                          "map kind"]))
        if name == "layer_norm":  # ConvNeXt's LayerNorm2d: over the channels of a map
            return {"type": name, "channels_first": True}, shape
        if name == "stochastic_depth":
            return {"type": name, "p": 0.2, "mode": self.draw(st.sampled_from(["row", "batch"]))}, \
                shape
        if name == "map kind":
            return self.map_kind(shape)
        return {"type": name}, shape

    def map_kind(self, shape):
        """A shape-keeping norm, shuffle or activation of the map kinds."""
        draw, c = self.draw, shape[0]
        name = draw(st.sampled_from(["group_norm", "instance_norm", "channel_shuffle", "prelu",
                                     "mish", "swish", "softplus"]))
        if name == "group_norm":
            return {"type": name, "num_groups": draw(st.sampled_from(divisors(c))),
                    "affine": draw(st.booleans())}, shape
        if name == "instance_norm" and math.prod(shape[1:]) > 1:  # PyTorch trains on 2 or more
            return {"type": name, "affine": draw(st.booleans()),
                    "track_running_stats": draw(st.booleans())}, shape
        if name == "channel_shuffle":
            return {"type": name, "groups": draw(st.sampled_from(divisors(c)))}, shape
        if name == "prelu":
            return {"type": name, "num_parameters": draw(st.sampled_from([1, c]))}, shape
        if name == "softplus":
            return {"type": name, "beta": draw(st.sampled_from([0.5, 1.0, 2.0]))}, shape
        return {"type": "mish" if name == "instance_norm" else name}, shape

    def rearrangement(self, shape):
        """pad (every mode, within PyTorch's limits), pixel_unshuffle where the map divides,
        pixel_shuffle where the channels do."""
        draw, nd = self.draw, len(shape) - 1
        choice = draw(st.sampled_from(["pad", "pad", "unshuffle", "shuffle"]))
        if choice == "unshuffle" and nd == 2 and shape[1] % 2 == shape[2] % 2 == 0:
            return {"type": "pixel_unshuffle", "downscale_factor": 2}, \
                (shape[0] * 4, shape[1] // 2, shape[2] // 2)
        if choice == "shuffle" and nd == 2 and shape[0] % 4 == 0:
            return {"type": "pixel_shuffle", "upscale_factor": 2}, \
                (shape[0] // 4, shape[1] * 2, shape[2] * 2)
        mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
        limit = {"reflect": min(shape[1:]) - 1, "circular": min(shape[1:])}.get(mode, 2)
        pads = [draw(st.integers(0, min(limit, 2))) for _ in range(2 * nd)]
        item = {"type": "pad", "mode": mode,
                "padding": pads[0] if len(set(pads)) == 1 else pads}
        if mode == "constant" and draw(st.booleans()):
            item["value"] = 0.5
        out = list(shape)
        for i, (lo, hi) in enumerate(zip(pads[::2], pads[1::2])):  # F.pad: last dim first
            out[nd - i] += lo + hi
        return item, tuple(out)

    def upsampling(self, shape):
        draw, nd = self.draw, len(shape) - 1
        if draw(st.booleans()):
            scale = [draw(st.integers(1, 2)) for _ in range(nd)]
            mode = draw(st.sampled_from(["nearest", {1: "linear", 2: "bilinear",
                                                     3: "trilinear"}[nd]]))
            return ({"type": "upsample", "scale_factor": one_or_list(draw, scale), "mode": mode},
                    (shape[0], *(n * f for n, f in zip(shape[1:], scale))))
        k = [draw(st.integers(1, 3)) for _ in range(nd)]
        s = [draw(st.integers(1, 2)) for _ in range(nd)]
        d = [draw(st.integers(1, 2)) for _ in range(nd)]
        op = [draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d)]
        p = [draw(st.integers(0, 1)) for _ in range(nd)]
        out = [(n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
               for n, ki, si, di, oi, pi in zip(shape[1:], k, s, d, op, p)]
        if min(out) < 1:
            p, out = [0] * nd, [o + 2 * pi for o, pi in zip(out, p)]
        c_out = draw(st.integers(1, 6))
        return ({"type": "conv_transpose", "out_channels": c_out, "kernel_size": k, "stride": s,
                 "dilation": d, "output_padding": op, "padding": p}, (c_out, *out))

    def item(self, shape, depth: int, aligned=None):
        """One layer or block; `aligned` limits it to centred windows of that stride."""
        draw = self.draw
        kinds = ["conv", "conv", "depthwise", "pool"]
        if aligned in (None, 1):  # an activation cannot carry a branch's stride
            kinds += ["activation"]
        if aligned is None and not self.rf_only and math.prod(shape[1:]) <= 1024:
            kinds += ["upsampling"]  # (kept small: repeated upsampling would be slow)
        if aligned is None and not self.rf_only and math.prod(shape[1:]) <= 1024:
            kinds += ["rearrangement"]
        if depth > 0:
            kinds += ["residual", "branches", "branches", "sequential"]
        kind = draw(st.sampled_from(kinds))
        if kind == "activation":
            return self.activation(shape)
        if kind == "upsampling":
            return self.upsampling(shape)
        if kind == "rearrangement":
            return self.rearrangement(shape)
        if kind in ("conv", "depthwise", "pool"):
            return getattr(self, kind)(shape, aligned)
        return getattr(self, kind)(shape, depth - 1, aligned)

    def layers(self, shape, depth: int, aligned=None, max_len: int = 3):
        """A layer list; with `aligned`, only its first layer strides."""
        items = []
        for i in range(self.draw(st.integers(1, max_len))):
            item, shape = self.item(shape, depth, aligned if i == 0 or aligned is None else 1)
            items.append(item)
        return items, shape

    def sequential(self, shape, depth, aligned=None):
        items, out = self.layers(shape, depth, aligned)
        return {"type": "sequential", "layers": items}, out

    def residual(self, shape, depth, aligned=None):
        draw = self.draw
        if self.rf_only or draw(st.booleans()):  # a body a strided 1x1 conv can shortcut
            aligned = aligned or draw(st.integers(1, 2))
        body, out = self.layers(shape, depth, aligned)
        item = {"type": "residual", "layers": body}
        if draw(st.booleans()):
            item["activation"] = "identity" if self.rf_only else "relu"
        if out == shape and not (self.rf_only and aligned > 1):  # (a 1-wide map may stride)
            item["shortcut"] = draw(st.sampled_from(["identity", "projection"]))
            return item, out
        strides = [aligned] * len(out[1:]) if self.rf_only else \
            [-(-n // o) for n, o in zip(shape[1:], out[1:])]
        if any((n - 1) // s + 1 != o for n, s, o in zip(shape[1:], strides, out[1:])):
            return {"type": "sequential", "layers": body}, out  # no 1x1 conv maps x to body(x)
        if self.rf_only or draw(st.booleans()):
            item["shortcut"] = [{"type": "conv", "out_channels": out[0], "kernel_size": 1,
                                 "stride": one_or_list(draw, strides), "bias": False}]
        else:
            item["shortcut"] = "projection"
        return item, out

    def branches(self, shape, depth, aligned=None):
        """Parallel paths and a merge; shapes are made to agree (aligned windows, or an
        adaptive pool / 1x1 conv appended to the paths that differ)."""
        draw = self.draw
        merge = "concat" if self.rf_only else draw(st.sampled_from(["concat", "concat", "add",
                                                                     "multiply"]))
        stride = aligned or (draw(st.integers(1, 2)) if self.rf_only or draw(st.booleans())
                             else None)
        paths = [self.layers(shape, depth, stride) for _ in range(draw(st.integers(1, 3)))]
        dim = 1  # PyTorch's numbering: 0 is the batch, 1 the channels, negative from the end
        if merge == "concat" and not self.rf_only and draw(st.integers(0, 3)) == 0:
            dim = draw(st.sampled_from([*range(1, len(shape) + 1), *range(-len(shape), 0)]))
        axis = dim - 1 if dim > 0 else dim + len(shape)  # in the per-sample shape
        spatial = tuple(min(v) for v in zip(*(out[1:] for _, out in paths)))
        channels = paths[0][1][0]
        fixed = []
        for items, out in paths:
            if out[1:] != spatial:
                items = items + [{"type": "adaptive_avg_pool", "output_size": list(spatial)}]
            if (merge != "concat" or axis != 0) and out[0] != channels:
                items = items + [{"type": "conv", "out_channels": channels, "kernel_size": 1}]
                out = (channels, *out[1:])
            fixed.append((items, (out[0], *spatial)))
        outs = [out for _, out in fixed]
        if merge == "concat":
            merged = list(outs[0])
            merged[axis] = sum(o[axis] for o in outs)
            out = tuple(merged)
        else:
            out = outs[0]
        item = {"type": draw(st.sampled_from(["branches", "inception"])),
                "branches": [items for items, _ in fixed], "merge": merge}
        if dim != 1:
            item["dim"] = dim
        return item, out


INPUTS = st.one_of(
    st.tuples(st.integers(1, 4), st.integers(4, 40)),
    st.tuples(st.integers(1, 4), st.integers(4, 14), st.integers(4, 14)),
    st.tuples(st.integers(1, 3), st.integers(3, 7), st.integers(3, 7), st.integers(3, 7)))


@st.composite
def multipath_specs(draw):
    """(spec dict, expected output shape)."""
    shape = draw(INPUTS)
    gen = Gen(draw)
    spec = {"name": "random", "input": list(shape), "layers": []}
    if draw(st.booleans()):  # a user block with parameters and an expression
        spec["blocks"] = {"cbr": {"params": {"c": None, "s": 1}, "layers": [
            {"type": "conv", "out_channels": "$c * 2", "kernel_size": 3, "stride": "$s",
             "padding": "same"}, "batch_norm", "relu"]}}
    seen = []   # (name, shape) of earlier top-level layers, for from: references
    for i in range(draw(st.integers(1, 5))):
        name = f"l{i}"
        joinable = [n for n, s in seen if s[1:] == shape[1:]]
        choice = draw(st.integers(0, 5))
        if choice == 0 and "blocks" in spec:
            c, s = draw(st.integers(1, 3)), draw(st.integers(1, 2))
            item = {"type": "cbr", "c": c, "s": s}
            shape = (2 * c, *(-(-n // s) for n in shape[1:]))
        elif choice == 1 and joinable:  # concat with an earlier layer of the same size
            other = draw(st.sampled_from(joinable))
            item = {"type": "concat", "from": [seen[-1][0], other]}
            shape = (shape[0] + dict(seen)[other][0], *shape[1:])
        else:
            item, shape = gen.item(shape, depth=2)
        item["name"] = name
        spec["layers"].append(item)
        seen.append((name, shape))
    if draw(st.booleans()):
        spec["layers"].append({"type": "global_avg_pool"})
        spec["layers"].append({"type": "dense", "out_features": 3})
        shape = (3,)
    return spec, shape


def runtime_macs(model, analysis) -> dict[str, int]:
    """MACs of every conv/transposed conv/dense from the built modules' weight shapes."""
    from archspec.backends.pytorch.compiler import layer_modules
    modules = layer_modules(model)  # direct tensors' layers included
    out = {}
    for name, info in analysis.layers.items():
        module = modules[name]
        if info.type == "projection":
            module = module.conv
            if module is None:
                out[name] = 0
                continue
        if isinstance(module, nn.Linear):
            out[name] = module.weight.numel()
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            out[name] = math.prod(info.output_shape) * math.prod(module.weight.shape[1:])
        elif isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            out[name] = math.prod(info.input_shapes[0]) * math.prod(module.weight.shape[1:])
        else:
            out[name] = 0
    return out


@settings(max_examples=300, **SETTINGS)
@given(multipath_specs())
def test_random_multipath_specs_match_pytorch(case):
    spec, expected = case
    text = yaml.safe_dump(spec, sort_keys=False)
    analysis = archspec.analyze(archspec.loads(text))
    assert analysis.output_shapes == [expected], text
    assert mismatches(analysis, device="cpu") == [], text
    model = archspec.compile(analysis.network)
    macs = runtime_macs(model, analysis)
    assert {n: i.macs for n, i in analysis.layers.items()} == macs, text
    event(f"{len(spec['input']) - 1}-D input")


# ---- receptive fields against gradients ----------------------------------------------------

@st.composite
def rf_specs(draw):
    """Convs, average pools, residuals and aligned branches: every path keeps a field."""
    shape = draw(st.one_of(st.tuples(st.integers(1, 2), st.integers(24, 120)),
                           st.tuples(st.integers(1, 2), st.integers(16, 40), st.integers(16, 40)),
                           st.tuples(st.just(1), st.integers(8, 14), st.integers(8, 14),
                                     st.integers(8, 14))))
    spec = {"name": "rf", "input": list(shape), "layers": []}
    gen = Gen(draw, rf_only=True)
    for _ in range(draw(st.integers(1, 3))):
        item, shape = gen.item(shape, depth=2)
        spec["layers"].append(item)
    return spec


def field_of_unit(rf, unit):
    """Input interval [start, end] per dim seen by the output unit at index `unit`."""
    return [(i * j - p, i * j - p + r - 1)
            for i, j, p, r in zip(unit, rf.stride, rf.padding, rf.size)]


def gradient_extent(model, input_shape, unit):
    """Per spatial dim, (first, last) input index with a nonzero gradient of the output at
    `unit`, summed over channels (every channel of the unit shares one field)."""
    x = torch.ones((1,) + tuple(input_shape), dtype=torch.float64, requires_grad=True)
    y = model(x)
    y[(0, slice(None)) + tuple(unit)].sum().backward()
    support = x.grad[0].abs().sum(0).nonzero()
    if not len(support):
        return None   # the unit reads padding only
    return [(int(support[:, d].min()), int(support[:, d].max()))
            for d in range(len(input_shape) - 1)]


def check_fields(analysis):
    """Compare the field of unit 0, the centre unit and the last unit with the gradient."""
    last = analysis.layers[analysis.network.outputs[0]]
    rf = last.receptive_field
    assert rf is not None, "aligned multi-path specs keep a receptive field"
    model = archspec.compile(analysis.network).double().eval()
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(1.0)   # positive weights, identity activations: no cancellation
    spatial_in = analysis.input_shape[1:]
    out = last.output_shape[1:]
    exact = 0
    for unit in {(0,) * len(out), tuple(n // 2 for n in out), tuple(n - 1 for n in out)}:
        field = field_of_unit(rf, unit)
        inside = all(0 <= start and end < n for (start, end), n in zip(field, spatial_in))
        got = gradient_extent(model, analysis.input_shape, unit)
        if inside:  # every path's window lies in the input: the field's ends are reached
            assert got == field, (unit, field, got)
            exact += 1
        elif got is not None:  # else the gradient stays within the clipped field
            for (start, end), (lo, hi), n in zip(field, got, spatial_in):
                assert max(start, 0) <= lo and hi <= min(end, n - 1), (unit, field, got)
    return exact


@settings(max_examples=300, **SETTINGS)
@given(rf_specs())
def test_random_receptive_fields_match_gradient_support(spec):
    text = yaml.safe_dump(spec, sort_keys=False)
    analysis = archspec.analyze(archspec.loads(text))
    exact = check_fields(analysis)
    event("a field entirely inside the input" if exact else "fields all clipped")


# ---- fixed multi-path cases with known fields ---------------------------------------------

def rf_case(layers: str, input_shape: str):
    analysis = archspec.analyze(archspec.loads(f"name: rf\ninput: {input_shape}\nlayers:\n"
                                              + layers))
    assert check_fields(analysis) > 0
    return analysis.layers[analysis.network.outputs[0]]


def test_inception_field_is_its_widest_branch():
    # 1x1, 3x3 and 5x5 'same' branches and a pooled one: the union is the 5x5 window
    out = rf_case("""
  - type: inception
    branches:
      - [{type: conv, out_channels: 2, kernel_size: 1}]
      - [{type: conv, out_channels: 2, kernel_size: 3, padding: 1}]
      - [{type: conv, out_channels: 2, kernel_size: 5, padding: 2}]
      - [{type: avg_pool, kernel_size: 3, stride: 1, padding: 1},
         {type: conv, out_channels: 2, kernel_size: 1}]
  - {type: conv, out_channels: 1, kernel_size: 3, stride: 2, padding: 1}
""", "[1, 24, 24]")
    # after the merge: 5 wide, then a 3x3/2 conv on top: 5 + 2 = 7, stride 2, padding 2 + 1
    assert out.receptive_field.size == (7, 7)
    assert out.receptive_field.stride == (2, 2)
    assert out.receptive_field.padding == (3, 3)


def test_misaligned_branches_union_their_windows():
    # on an even length, 'same' with stride 2 pads 0 left and 1 right, so that branch's window
    # starts one step later than the symmetric branch's: the union is 4 wide
    out = rf_case("""
  - type: branches
    merge: add
    branches:
      - [{type: conv, out_channels: 1, kernel_size: 3, stride: 2, padding: same}]
      - [{type: conv, out_channels: 1, kernel_size: 3, stride: 2, padding: 1}]
""", "[1, 32]")
    assert (out.receptive_field.size, out.receptive_field.padding) == ((4,), (1,))
    assert any("not aligned" in note for note in out.notes)


def test_residual_field_spans_body_and_strided_shortcut():
    out = rf_case("""
  - type: residual
    shortcut: [{type: conv, out_channels: 4, kernel_size: 1, stride: 2}]
    layers:
      - {type: conv, out_channels: 4, kernel_size: 3, stride: 2, padding: 1, dilation: 1}
      - {type: conv, out_channels: 4, kernel_size: 3, padding: 2, dilation: 2}
""", "[2, 20, 20]")
    # body: 3 wide / 2, then a 3-tap conv dilated by 2 at jump 2: 3 + 2 * 2 * 2 = 11
    assert out.receptive_field.size == (11, 11)
    assert out.receptive_field.stride == (2, 2)


# ---- memory against PyTorch's autograd and a live-tensor count ------------------------------

MEMORY_DTYPES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def freeze_some(draw, node):
    """Mark random primitive layers trainable: false (walking blocks and branches), so the
    saved tensors follow which inputs and parameters need gradients."""
    from archspec.layers import REGISTRY
    if isinstance(node, dict):
        if node.get("type") in REGISTRY and draw(st.integers(0, 3)) == 0:
            node["trainable"] = False
        for value in node.values():
            freeze_some(draw, value)
    elif isinstance(node, list):
        for value in node:
            freeze_some(draw, value)


@st.composite
def memory_cases(draw):
    spec, _ = draw(multipath_specs())
    freeze_some(draw, spec["layers"])
    dtype = draw(st.sampled_from(list(MEMORY_DTYPES)))
    if len(spec["input"]) == 4 and MEMORY_DTYPES[dtype] == 2:
        dtype = "float32"  # PyTorch's CPU avg_pool3d has no half kernels
    return spec, dtype, draw(st.integers(2, 3))  # batch norm trains on 2 values or more


@settings(max_examples=60, **SETTINGS)
@given(memory_cases())
def test_random_specs_memory_matches_pytorch(case):
    """Saved-for-backward per layer equals saved_tensors_hooks on the compiled model, and the
    inference peak equals the live layer outputs counted while the model runs."""
    from archspec.backends.memory_probe import measure_inference_peak, measure_saved_bytes
    from archspec.memory import inference_peak_bytes, saved_bytes
    spec, dtype, batch = case
    text = yaml.safe_dump(spec, sort_keys=False)
    analysis = archspec.analyze(archspec.loads(text), batch_size=batch,
                                dtype_bytes=MEMORY_DTYPES[dtype])
    assert saved_bytes(analysis) == measure_saved_bytes(analysis, dtype), text
    assert inference_peak_bytes(analysis) == measure_inference_peak(analysis, dtype), text
    event(dtype)


# ---- token sequences: attention and transformer layers ----------------------------------------

def tokens_input(length: int, features: int):
    return {"shape": [length, features], "layout": "tokens"}


@st.composite
def token_specs(draw):
    """A chain of self-, causal and cross-attention layers and transformer encoder layers on a
    [L, E] sequence; cross layers attend to an earlier layer's output."""
    heads = draw(st.integers(1, 4))
    embed = heads * draw(st.integers(1, 4))
    spec = {"name": "tokens", "input": tokens_input(draw(st.integers(1, 9)), embed),
            "layers": []}
    names = ["input"]
    for i in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 2)) == 0:
            item = {"type": "transformer_encoder_layer", "name": f"a{i}",
                    "nhead": draw(st.sampled_from(divisors(embed))),
                    "dim_feedforward": draw(st.integers(1, 9)),
                    "dropout": draw(st.sampled_from([0.0, 0.1])),
                    "activation": draw(st.sampled_from(["relu", "gelu"])),
                    "norm_first": draw(st.booleans()), "bias": draw(st.booleans()),
                    "causal": draw(st.booleans()), "trainable": draw(st.booleans())}
            spec["layers"].append(item)
            names.append(item["name"])
            continue
        item = {"type": "multi_head_attention", "name": f"a{i}",
                "num_heads": draw(st.sampled_from(divisors(embed))),
                "bias": draw(st.booleans()), "dropout": draw(st.sampled_from([0.0, 0.0, 0.25]))}
        if draw(st.booleans()) and len(names) > 1:
            item["from"] = [names[-1], draw(st.sampled_from(names[:-1]))]
        else:
            item["causal"] = draw(st.booleans())
        if draw(st.integers(0, 3)) == 0:
            item["trainable"] = False
        spec["layers"].append(item)
        names.append(item["name"])
    return spec


@settings(max_examples=40, **SETTINGS)
@given(token_specs(), st.sampled_from(list(MEMORY_DTYPES)), st.integers(1, 3))
def test_random_attention_specs_match_pytorch(spec, dtype, batch):
    """Shapes, params, MACs (FlopCounterMode under the math kernel) and saved memory."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from archspec.backends.memory_probe import measure_saved_bytes
    from archspec.memory import saved_bytes
    text = yaml.safe_dump(spec, sort_keys=False)
    analysis = archspec.analyze(archspec.loads(text), batch_size=batch,
                                dtype_bytes=MEMORY_DTYPES[dtype])
    assert analysis.output_shapes == [tuple(spec["input"]["shape"])], text
    assert mismatches(analysis, device="cpu") == [], text
    model = archspec.compile(analysis.network).eval()
    # PyTorch's fused fast path (eval with no grad, or frozen layers) is invisible to
    # FlopCounterMode: count the same computation on the math path
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as count:
            model(torch.randn(1, *spec["input"]["shape"]))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    assert count.get_total_flops() == 2 * analysis.macs, text
    assert saved_bytes(analysis) == measure_saved_bytes(analysis, dtype), text
    event(dtype)


# ---- recurrent layers: chains of LSTMs and GRUs ------------------------------------------------

@st.composite
def recurrent_specs(draw):
    """(spec, expected output shape): stacked lstm/gru layers with random settings on a [L, D]
    sequence, each handing on every step, the last ending the chain when it hands on its
    final state."""
    length, features = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    spec = {"name": "recurrent", "input": {"shape": [length, features], "layout": "tokens"},
            "layers": []}
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["lstm", "gru"]))
        hidden = draw(st.integers(1, 5))
        item = {"type": kind, "name": f"r{i}", "hidden_size": hidden,
                "num_layers": draw(st.integers(1, 3)), "bidirectional": draw(st.booleans()),
                "bias": draw(st.booleans())}
        if item["num_layers"] > 1:
            item["dropout"] = draw(st.sampled_from([0.0, 0.5, 1.0]))
        width = hidden
        if kind == "lstm" and hidden > 1 and draw(st.booleans()):
            item["proj_size"] = width = draw(st.integers(1, hidden - 1))
        if draw(st.integers(0, 3)) == 0:
            item["trainable"] = False
        width *= 2 if item["bidirectional"] else 1
        spec["layers"].append(item)
        if draw(st.integers(0, 3)) == 0:
            item["steps"] = "last"
            return spec, (width,)
        if draw(st.integers(0, 3)) == 0:
            spec["layers"].append({"type": draw(st.sampled_from(["dropout", "tanh"]))})
    return spec, (length, width)


@settings(max_examples=40, **SETTINGS)
@given(recurrent_specs(), st.sampled_from(list(MEMORY_DTYPES)), st.integers(1, 3))
def test_random_recurrent_specs_match_pytorch(case, dtype, batch):
    """Shapes, params, MACs (FlopCounterMode on ATen's CPU kernel), saved memory and the
    inference peak."""
    from torch.utils.flop_counter import FlopCounterMode

    from archspec.backends.memory_probe import measure_inference_peak, measure_saved_bytes
    from archspec.memory import inference_peak_bytes, saved_bytes
    spec, expected = case
    text = yaml.safe_dump(spec, sort_keys=False)
    analysis = archspec.analyze(archspec.loads(text), batch_size=batch,
                                dtype_bytes=MEMORY_DTYPES[dtype])
    assert analysis.output_shapes == [expected], text
    assert mismatches(analysis, device="cpu") == [], text
    model = archspec.compile(analysis.network).eval()
    with torch.backends.mkldnn.flags(enabled=False), torch.no_grad(), \
            FlopCounterMode(display=False) as count:
        model(torch.randn(1, *spec["input"]["shape"]))
    assert count.get_total_flops() == 2 * analysis.macs, text
    assert saved_bytes(analysis) == measure_saved_bytes(analysis, dtype), text
    assert inference_peak_bytes(analysis) == measure_inference_peak(analysis, dtype), text
    event(dtype)


# ---- learned tensors and layer norm on token sequences, against PyTorch -------------------------

@st.composite
def learned_token_specs(draw):
    """Token ids through an embedding, or a token sequence [L, D], then a random chain of
    layer_norm, dense (on the last axis), parameter (added or prepended), layer_scale and gelu:
    (spec dict, expected output shape)."""
    length, dim = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    if draw(st.booleans()):
        vocab = draw(st.integers(1, 20))
        spec = {"name": "tokens", "input": {"shape": [length], "layout": "ids"}, "layers": [
            {"type": "embedding", "num_embeddings": vocab, "embedding_dim": dim,
             "padding_idx": draw(st.sampled_from([None, 0, -1]))}]}
    else:
        spec = {"name": "tokens", "input": {"shape": [length, dim], "layout": "tokens"},
                "layers": []}
    for _ in range(draw(st.integers(1, 5))):
        choice = draw(st.sampled_from(["layer_norm", "dense", "add", "prepend", "scale", "gelu"]))
        if choice == "layer_norm":
            spec["layers"].append({"type": "layer_norm", "bias": draw(st.booleans()),
                                   "elementwise_affine": draw(st.booleans())})
        elif choice == "dense":
            dim = draw(st.integers(1, 6))
            spec["layers"].append({"type": "dense", "out_features": dim})
        elif choice == "add":
            shape = [draw(st.sampled_from([1, length])), dim]
            spec["layers"].append({"type": "parameter", "shape": shape, "init": "normal"})
        elif choice == "prepend":
            tokens = draw(st.integers(1, 2))
            spec["layers"].append({"type": "parameter", "mode": "prepend",
                                   "shape": [tokens, dim], "trainable": draw(st.booleans())})
            length += tokens
        elif choice == "scale":
            spec["layers"].append({"type": "layer_scale", "dim": -1})
        else:
            spec["layers"].append("gelu")
    return spec, (length, dim)


@settings(max_examples=60, **SETTINGS)
@given(learned_token_specs(), st.sampled_from(list(MEMORY_DTYPES)), st.integers(1, 3))
def test_random_token_chains_match_pytorch(case, dtype, batch):
    """Shapes, counts and MACs (FlopCounterMode) of the compiled model, and its saved and
    peak memory, equal the analysis."""
    from torch.utils.flop_counter import FlopCounterMode

    from archspec.backends.memory_probe import measure_inference_peak, measure_saved_bytes
    from archspec.backends.pytorch.compiler import example_input
    from archspec.memory import inference_peak_bytes, saved_bytes
    spec, expected = case
    text = yaml.safe_dump(spec, sort_keys=False)
    analysis = archspec.analyze(archspec.loads(text), batch_size=batch,
                                dtype_bytes=MEMORY_DTYPES[dtype])
    assert analysis.output_shape == expected, text
    assert mismatches(analysis, device="cpu") == [], text
    model = archspec.compile(analysis.network)
    x = example_input(analysis, batch)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    assert counter.get_total_flops() == 2 * analysis.macs * batch, text
    assert saved_bytes(analysis) == measure_saved_bytes(analysis, dtype), text
    assert inference_peak_bytes(analysis) == measure_inference_peak(analysis, dtype), text
    event(spec["input"]["layout"])


# ---- shape kinds: axes moved, merged, split, cut, with the layout followed ----------------------

def layout_at(rank: int, features: int | None, before: str) -> str | None:
    """The layout of a result whose feature axis is `features` (None: taken away, the layout
    stays); None when the features sit between other axes (the analysis refuses it)."""
    if rank == 1:
        return "vector"
    if features is None:
        return "channels_first" if before == "vector" else before
    return "channels_first" if features == 0 else "channels_last" if features == rank - 1 \
        else None


@st.composite
def shape_kind_specs(draw):
    """A map [C, ...] or a token sequence, then a random chain of shape kinds (permute,
    transpose, flatten, reshape, squeeze, unsqueeze, slice, index) between layers that read the
    layout (a 1x1 conv on channels-first maps, dense and layer_norm on channels-last tensors
    and vectors, relu anywhere): (spec, expected shape, expected layout per layer)."""
    rank = draw(st.integers(1, 3))
    shape = [draw(st.integers(1, 4)) for _ in range(rank)]
    layout = draw(st.sampled_from(["channels_first", "channels_last"])) if rank > 1 else "vector"
    spec = {"name": "shapes", "input": {"shape": list(shape), "layout": layout}, "layers": []}
    layouts = []

    def feature() -> int:
        return len(shape) - 1 if layout == "channels_last" else 0

    for _ in range(draw(st.integers(1, 7))):
        rank, choice = len(shape), draw(st.sampled_from(
            ["permute", "transpose", "flatten", "reshape", "squeeze", "unsqueeze", "slice",
             "index", "compute", "relu"]))
        layer, new_shape, new_layout = None, shape, layout
        if choice in ("permute", "transpose") and rank > 1:
            if choice == "permute":
                order = list(draw(st.permutations(range(rank))))
                layer = {"type": "permute", "dims": [0] + [a + 1 for a in order]}
            else:
                a, b = draw(st.lists(st.integers(0, rank - 1), min_size=2, max_size=2,
                                     unique=True))
                order = list(range(rank))
                order[a], order[b] = b, a
                layer = {"type": "transpose", "dims": [a + 1, b - rank]}
            new_shape = [shape[a] for a in order]
            new_layout = layout_at(rank, order.index(feature()), layout)
        elif choice == "flatten":
            start = draw(st.integers(0, rank - 1))
            end = draw(st.integers(start, rank - 1))
            layer = {"type": "flatten", "start_dim": start + 1, "end_dim": end - rank}
            new_shape = shape[:start] + [math.prod(shape[start:end + 1])] + shape[end + 1:]
            f = feature()
            f = start if start <= f <= end else f - (end - start) * (f > end)
            new_layout = layout_at(len(new_shape), f, layout)
        elif choice == "reshape":
            size = math.prod(shape)
            first = draw(st.sampled_from(divisors(size)))
            new_shape = draw(st.sampled_from([[size], [first, size // first]]))
            written = [-1 if i == 0 and draw(st.booleans()) else n
                       for i, n in enumerate(new_shape)]
            layer = {"type": "reshape", "shape": written}
            if len(new_shape) == 1:
                new_layout = "vector"
            else:
                given = draw(st.sampled_from([None, "channels_first", "tokens"]))
                if given:
                    layer["layout"] = given
                new_layout = {"tokens": "channels_last"}.get(given, given) or (
                    "channels_first" if layout == "vector" else layout)
        elif choice == "squeeze" and rank > 1 and 1 in shape:
            ones = [a for a, n in enumerate(shape) if n == 1]
            gone = ones if len(ones) < rank and draw(st.booleans()) else [draw(st.sampled_from(ones))]
            if len(gone) == rank:
                continue
            layer = {"type": "squeeze"} if gone == ones and len(ones) > 1 else \
                {"type": "squeeze", "dim": gone[0] + 1}
            gone = ones if "dim" not in layer else gone
            new_shape = [n for a, n in enumerate(shape) if a not in gone]
            f = feature()
            new_layout = layout_at(len(new_shape), None if f in gone else
                                   f - sum(a < f for a in gone), layout)
        elif choice == "unsqueeze" and rank < 4:
            at = draw(st.integers(0, rank))
            layer = {"type": "unsqueeze", "dim": at + 1}
            new_shape = shape[:at] + [1] + shape[at:]
            f = feature()
            new_layout = layout_at(rank + 1, f + (at <= f), layout)
        elif choice == "slice":
            axis = draw(st.integers(0, rank - 1))
            start = draw(st.integers(0, shape[axis] - 1))
            stop = draw(st.integers(start + 1, shape[axis]))
            step = draw(st.integers(1, 3))
            layer = {"type": "slice", "dim": axis + 1, "start": start - shape[axis],
                     "stop": stop, "step": step}
            new_shape = shape[:axis] + [len(range(start, stop, step))] + shape[axis + 1:]
        elif choice == "index" and rank > 1:
            axis = draw(st.integers(0, rank - 1))
            layer = {"type": "index", "dim": axis + 1,
                     "index": draw(st.integers(-shape[axis], shape[axis] - 1))}
            new_shape = shape[:axis] + shape[axis + 1:]
            f = feature()
            new_layout = layout_at(rank - 1, None if f == axis else f - (f > axis), layout)
        elif choice == "compute":
            width = draw(st.integers(1, 4))
            if layout == "channels_first":
                layer = {"type": "conv", "out_channels": width, "kernel_size": 1}
                new_shape = [width] + shape[1:]
            elif draw(st.booleans()):
                layer = {"type": "dense", "out_features": width}
                new_shape = shape[:-1] + [width]
            else:
                layer = {"type": "layer_norm"}
        elif choice == "relu":
            layer = "relu"
        if layer is None or new_layout is None:
            continue  # not possible here, or the features would sit between other axes
        spec["layers"].append(layer)
        shape, layout = new_shape, new_layout
        layouts.append(layout)
    if not spec["layers"]:
        spec["layers"].append("relu")
        layouts.append(layout)
    return spec, tuple(shape), layouts


@settings(max_examples=60, **SETTINGS)
@given(shape_kind_specs(), st.sampled_from(list(MEMORY_DTYPES)), st.integers(1, 3))
def test_random_shape_kind_chains_match_pytorch(case, dtype, batch):
    """Shapes and layouts as tracked here; shapes, counts, MACs (FlopCounterMode), saved and
    peak memory of the compiled model equal the analysis."""
    from torch.utils.flop_counter import FlopCounterMode

    from archspec.backends.memory_probe import measure_inference_peak, measure_saved_bytes
    from archspec.backends.pytorch.compiler import example_input
    from archspec.memory import inference_peak_bytes, saved_bytes
    spec, expected, layouts = case
    text = yaml.safe_dump(spec, sort_keys=False)
    analysis = archspec.analyze(archspec.loads(text), batch_size=batch,
                                dtype_bytes=MEMORY_DTYPES[dtype])
    assert analysis.output_shape == expected, text
    assert [i.layout for i in analysis.layers.values()] == layouts, text
    assert mismatches(analysis, device="cpu") == [], text
    model = archspec.compile(analysis.network)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(example_input(analysis, batch))
    assert counter.get_total_flops() == 2 * analysis.macs * batch, text
    assert saved_bytes(analysis) == measure_saved_bytes(analysis, dtype), text
    assert inference_peak_bytes(analysis) == measure_inference_peak(analysis, dtype), text
    event(layouts[-1])

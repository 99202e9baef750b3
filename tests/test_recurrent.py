"""lstm and gru against PyTorch's nn.LSTM / nn.GRU of the same settings: state_dict keys, shapes
and order, parameter counts, outputs with the same weights, MACs against FlopCounterMode and
against a derivation written out here, receptive fields against gradients."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archspec

CASES = [
    ("lstm", {"hidden_size": 5}, (7, 4)),
    ("lstm", {"hidden_size": 5, "steps": "last"}, (7, 4)),
    ("lstm", {"hidden_size": 6, "num_layers": 3, "bidirectional": True, "dropout": 0.2}, (5, 3)),
    ("lstm", {"hidden_size": 4, "num_layers": 2, "bidirectional": True, "steps": "last",
              "bias": False}, (6, 2)),
    ("lstm", {"hidden_size": 6, "proj_size": 2, "num_layers": 2, "bidirectional": True}, (4, 3)),
    ("lstm", {"hidden_size": 6, "proj_size": 3, "steps": "last"}, (1, 5)),
    ("gru", {"hidden_size": 5}, (7, 4)),
    ("gru", {"hidden_size": 5, "steps": "last", "bias": False}, (7, 4)),
    ("gru", {"hidden_size": 3, "num_layers": 2, "bidirectional": True, "dropout": 0.5}, (6, 8)),
    ("gru", {"hidden_size": 4, "num_layers": 3, "bidirectional": True, "steps": "last"}, (2, 3)),
]
IDS = [f"{kind}-{i}" for i, (kind, _, _) in enumerate(CASES)]


def spec_text(kind: str, fields: dict, shape, name: str = "rnn") -> str:
    items = ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}"
                      for k, v in fields.items())
    return (f"name: t\ninput: {{shape: [{shape[0]}, {shape[1]}], layout: tokens}}\nlayers:\n"
            f"  - {{type: {kind}, name: {name}, {items}}}\n")


def pytorch_module(kind: str, fields: dict, features: int) -> nn.Module:
    """The module a PyTorch user writes for these settings."""
    cls = nn.LSTM if kind == "lstm" else nn.GRU
    kwargs = {k: v for k, v in fields.items() if k != "steps"}
    return cls(features, batch_first=True, **kwargs)


def pytorch_output(module: nn.Module, x, steps: str):
    """What the layer hands on: every step's output, or h_n of the last layer with both
    directions side by side (forward first), as in the usual text classifier."""
    output, state = module(x)
    if steps == "all":
        return output
    h_n = state[0] if isinstance(module, nn.LSTM) else state
    if module.bidirectional:
        return torch.cat([h_n[-2], h_n[-1]], dim=1)
    return h_n[-1]


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


@pytest.mark.parametrize("kind, fields, shape", CASES, ids=IDS)
def test_state_dict_counts_and_outputs_equal_pytorch(kind, fields, shape):
    analysis = archspec.analyze(archspec.loads(spec_text(kind, fields, shape)))
    model = archspec.compile(analysis.network)
    ref = pytorch_module(kind, fields, shape[1])
    ours = {k.removeprefix("rnn."): v for k, v in model.state_dict().items()}
    assert [(k, v.shape) for k, v in ours.items()] == \
        [(k, v.shape) for k, v in ref.state_dict().items()]
    assert analysis.params == sum(p.numel() for p in ref.parameters())
    assert analysis.buffers == 0
    assert analysis.layers["rnn"].trainable_tensors == len(list(ref.parameters()))
    ref.load_state_dict(ours)
    x = torch.randn(3, *shape)
    model.eval(), ref.eval()
    with torch.no_grad():
        want = pytorch_output(ref, x, fields.get("steps", "all"))
        got = model(x)
    assert torch.equal(got, want)
    assert analysis.output_shape == tuple(want.shape[1:])
    model.train(), ref.train()  # dropout between layers: the same masks from the same seed
    torch.manual_seed(1)
    got = model(x)
    torch.manual_seed(1)
    torch.testing.assert_close(got, pytorch_output(ref, x, fields.get("steps", "all")))


@pytest.mark.parametrize("kind, fields, shape", CASES, ids=IDS)
def test_macs_equal_the_gate_matmuls_flop_counter_mode_counts(kind, fields, shape):
    """FlopCounterMode sees the gate matmuls of ATen's CPU kernel (oneDNN's fused LSTM kernel is
    one operator it does not count, so it is switched off here)."""
    analysis = archspec.analyze(archspec.loads(spec_text(kind, fields, shape)))
    ref = pytorch_module(kind, fields, shape[1])
    with torch.backends.mkldnn.flags(enabled=False), torch.no_grad(), \
            FlopCounterMode(display=False) as counter:
        ref(torch.randn(1, *shape))
    assert counter.get_total_flops() == 2 * analysis.macs


def test_macs_and_params_by_hand():
    """A text classifier's LSTM: 50 steps of 300 features, hidden 128, 2 layers, both ways."""
    text = spec_text("lstm", {"hidden_size": 128, "num_layers": 2, "bidirectional": True},
                     (50, 300))
    info = archspec.analyze(archspec.loads(text)).layers["rnn"]
    # per step and direction: input x 4 gates x 128 plus hidden 128 x 4 x 128
    layer0 = 300 * 512 + 128 * 512     # 219,136
    layer1 = 256 * 512 + 128 * 512     # 196,608: layer 1 reads both directions (256)
    assert info.macs == 50 * 2 * (layer0 + layer1) == 41_574_400
    # weights as the MACs per step, and two biases of 4 x 128 per layer and direction
    assert info.params == 2 * (layer0 + layer1) + 2 * 2 * 2 * 512 == 835_584
    assert info.output_shape == (50, 256)
    # an LSTM with projections: gates from the input and the projected state (3), then 6 -> 3
    proj = archspec.analyze(archspec.loads(spec_text(
        "lstm", {"hidden_size": 6, "proj_size": 3, "bias": False}, (10, 8)))).layers["rnn"]
    assert proj.macs == 10 * (8 * 24 + 3 * 24 + 6 * 3) == 2_820
    gru = archspec.analyze(archspec.loads(spec_text(
        "gru", {"hidden_size": 16, "steps": "last"}, (20, 10)))).layers["rnn"]
    assert gru.macs == 20 * (10 * 48 + 16 * 48) == 24_960
    assert gru.params == 10 * 48 + 16 * 48 + 2 * 48 and gru.output_shape == (16,)


def test_last_is_h_n_of_the_last_layer_not_the_last_output_step():
    """For a bidirectional layer the backward direction's final state is its output at step 0:
    steps: last is [forward output at step L-1, backward output at step 0]."""
    text = spec_text("gru", {"hidden_size": 4, "bidirectional": True, "num_layers": 2}, (6, 3))
    network = archspec.loads(text)
    every = archspec.compile(network).eval()
    last = archspec.compile(archspec.loads(text.replace("2}", "2, steps: last}"))).eval()
    last.load_state_dict(every.state_dict())
    x = torch.randn(2, 6, 3)
    with torch.no_grad():
        steps, final = every(x), last(x)
    assert torch.equal(final[:, :4], steps[:, -1, :4])
    assert torch.equal(final[:, 4:], steps[:, 0, 4:])
    assert not torch.allclose(final, steps[:, -1])


def gradient_support(model, shape, step: int) -> tuple[int, int]:
    x = torch.randn((1, *shape), dtype=torch.float64, requires_grad=True)
    model(x)[0, step].sum().backward()
    positions = x.grad[0].abs().sum(1).nonzero()[:, 0]
    return int(positions.min()), int(positions.max())


@pytest.mark.parametrize("layers, sees", [
    ("  - {type: lstm, hidden_size: 3}\n", "earlier"),
    ("  - {type: gru, hidden_size: 3, bidirectional: true}\n", "all"),
    ("  - {type: lstm, hidden_size: 3}\n  - {type: gru, hidden_size: 2, num_layers: 2}\n",
     "earlier"),
])
def test_receptive_field_is_every_earlier_step_or_the_whole_sequence(layers, sees):
    length = 7
    analysis = archspec.analyze(archspec.loads(f"name: t\ninput: {{shape: [{length}, 4], layout: tokens}}\nlayers:\n{layers}"))
    last = analysis.layers[analysis.network.outputs[0]]
    rf = last.receptive_field
    model = archspec.compile(analysis.network).double()
    for step in range(length):
        start = step * rf.stride[0] - rf.padding[0]
        field = (max(start, 0), min(start + rf.size[0] - 1, length - 1))
        assert gradient_support(model, (length, 4), step) == field
        assert field == ((0, step) if sees == "earlier" else (0, length - 1))
    assert any("receptive field" in note for note in last.notes)


def test_labels_and_notes():
    analysis = archspec.analyze(archspec.loads(
        "name: t\ninput: {shape: [9, 4], layout: tokens}\nlayers:\n"
        "  - {type: lstm, hidden_size: 8, num_layers: 2, bidirectional: true, proj_size: 3}\n"
        "  - {type: gru, hidden_size: 5, steps: last}\n"))
    lstm, gru = analysis.layers["lstm1"], analysis.layers["gru1"]
    assert (lstm.label, lstm.output_shape) == ("biLSTM 8 proj 3 x2", (9, 6))
    assert (gru.label, gru.output_shape, gru.receptive_field) == ("GRU 5, last", (5,), None)
    assert lstm.notes == [("receptive field: every step sees the whole sequence (a bidirectional "
                          "LSTM)")]
    assert gru.notes == [("receptive field: the final state has seen every step of the "
                         "sequence (GRU)")]


def test_training_runs_atens_kernel_and_inference_keeps_onednn(monkeypatch):
    """The compiled layer switches oneDNN off only while autograd records, and restores it."""
    model = archspec.compile(archspec.loads(spec_text("lstm", {"hidden_size": 4}, (5, 3))))
    seen = []
    original = nn.LSTM.forward

    def spy(self, *args, **kwargs):
        seen.append(torch.backends.mkldnn.enabled)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(nn.LSTM, "forward", spy)
    before = torch.backends.mkldnn.enabled
    model(torch.randn(2, 5, 3)).sum().backward()
    with torch.no_grad():
        model(torch.randn(2, 5, 3))
    assert seen == [False, before] and torch.backends.mkldnn.enabled == before


def test_python_export_writes_pytorch_modules(tmp_path):
    from archspec.backends.export.python_source import python_source
    text = ("name: t\ninput: {shape: [5, 4], layout: tokens}\nlayers:\n"
            "  - {type: lstm, hidden_size: 6, proj_size: 2, bidirectional: true}\n"
            "  - {type: gru, hidden_size: 3, bidirectional: true, steps: last}\n")
    analysis = archspec.analyze(archspec.loads(text))
    model = archspec.compile(analysis.network).eval()
    source = python_source(analysis)
    assert "nn.LSTM(4, 6, bidirectional=True, proj_size=2, batch_first=True)" in source
    assert "nn.GRU(4, 3, bidirectional=True, batch_first=True)" in source
    namespace: dict = {}
    exec(compile(source, "<generated>", "exec"), namespace)
    generated = namespace["T"]()
    generated.load_state_dict(model.state_dict())
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        assert torch.equal(generated.eval()(x), model(x))


def test_onnx_export_refuses_an_lstm_with_projections(tmp_path):
    from archspec.errors import SpecError
    text = ("name: t\ninput: {shape: [5, 4], layout: tokens}\nlayers:\n  - {type: lstm, hidden_size: 6}\n"
            "  - {type: lstm, hidden_size: 6, proj_size: 2}\n")
    with pytest.raises(SpecError) as caught:
        archspec.export(archspec.loads(text, filename="p.yaml"), tmp_path / "p.onnx", to="onnx")
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.line, diagnostic.column, diagnostic.layer) == (5, 45, "lstm2")
    assert diagnostic.message == ("ONNX cannot express an LSTM with proj_size: its LSTM operator "
                                  "has no projection")
    assert "--to torch-export" in diagnostic.hint
    assert not (tmp_path / "p.onnx").exists()

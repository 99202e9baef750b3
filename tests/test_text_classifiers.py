"""The text classifiers of the zoo against the same networks written in plain PyTorch: the
LSTM classifier (embedding, bidirectional LSTM, final state, dense). Same weights loaded: the outputs are equal; the
parameters and MACs equal PyTorch's own counts (FlopCounterMode) and a derivation here."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archspec

SPECS = Path(__file__).resolve().parent.parent / "specs"
VOCAB, LENGTH = 20_000, 64


class LSTMClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 100, padding_idx=0)
        self.lstm = nn.LSTM(100, 128, num_layers=2, bidirectional=True, dropout=0.3,
                            batch_first=True)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(256, 2)

    def forward(self, ids):
        _, (h_n, _) = self.lstm(self.embedding(ids))
        return self.fc(self.dropout(torch.cat([h_n[-2], h_n[-1]], dim=1)))


# spec -> (the PyTorch network, its MACs per sentence derived by hand)
CASES = {
    # LSTM, per step and direction: input x 4 gates x 128 plus 128 x 4 x 128; layer 1 reads
    # both directions (256); the dense layer 256 x 2; the embedding is a lookup (0)
    "lstm_text_classifier": (LSTMClassifier,
                             64 * 2 * (100 * 512 + 128 * 512) + 64 * 2 * (256 * 512 + 128 * 512)
                             + 256 * 2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_spec_is_the_pytorch_network(name):
    torch.manual_seed(0)
    reference, macs = CASES[name][0](), CASES[name][1]
    analysis = archspec.analyze(archspec.load(SPECS / f"{name}.yaml"))
    model = archspec.compile(analysis.network)
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    assert analysis.params == sum(p.numel() for p in reference.parameters())
    assert analysis.buffers == 0
    reference.load_state_dict(model.state_dict())
    ids = torch.randint(0, VOCAB, (3, LENGTH))
    ids[0, 40:] = 0  # a short sentence, padded
    model.eval(), reference.eval()
    with torch.no_grad():
        want = reference(ids)
        assert torch.equal(model(ids), want)
    assert analysis.output_shape == (2,)
    with torch.backends.mkldnn.flags(enabled=False), torch.no_grad(), \
            FlopCounterMode(display=False) as counter:  # ATen's LSTM: its matmuls are counted
        reference(ids[:1])
    assert analysis.macs == macs == counter.get_total_flops() // 2


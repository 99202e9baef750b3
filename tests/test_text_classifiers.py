"""The text models of the zoo against the same networks written in plain PyTorch: the LSTM
classifier (embedding, bidirectional LSTM, final state, dense), the Kim-style text CNN
(embedding, three parallel 1-D convs max-pooled over the sentence, dense) and the small GPT
language model (token and position embeddings, causal pre-norm blocks, untied head). Same
weights loaded: the outputs are equal; the parameters and MACs equal PyTorch's own counts
(FlopCounterMode) and a derivation here."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import archspec

SPECS = Path(__file__).resolve().parent.parent / "specs"
LENGTH = 64


class LSTMClassifier(nn.Module):
    vocab = 20_000

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(self.vocab, 100, padding_idx=0)
        self.lstm = nn.LSTM(100, 128, num_layers=2, bidirectional=True, dropout=0.3,
                            batch_first=True)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(256, 2)

    def forward(self, ids):
        _, (h_n, _) = self.lstm(self.embedding(ids))
        return self.fc(self.dropout(torch.cat([h_n[-2], h_n[-1]], dim=1)))


class ConvPool(nn.Module):
    """One n-gram detector of the text CNN: 100 filters over `width` words, max over the
    sentence."""

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv1d(128, 100, width)

    def forward(self, x):
        return torch.relu(self.conv(x)).amax(dim=2)


class TextCNN(nn.Module):
    vocab = 10_000

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(self.vocab, 128, padding_idx=0)
        self.convs = nn.ModuleDict({f"width{k}": ConvPool(k) for k in (3, 4, 5)})
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(300, 2)

    def forward(self, ids):
        x = self.embedding(ids).transpose(1, 2)  # [N, 128, L]: the words' features as channels
        return self.fc(self.dropout(torch.cat([conv(x) for conv in self.convs.values()], 1)))


class GPTBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(128)
        self.attn = nn.MultiheadAttention(128, 4, batch_first=True)
        self.ln_2 = nn.LayerNorm(128)
        self.fc = nn.Linear(128, 512)
        self.gelu = nn.GELU(approximate="tanh")
        self.proj = nn.Linear(512, 128)

    def forward(self, x):
        h = self.ln_1(x)
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).triu(1)  # no later tokens
        x = x + self.attn(h, h, h, attn_mask=mask, is_causal=True, need_weights=False)[0]
        return x + self.proj(self.gelu(self.fc(self.ln_2(x))))


class GPT(nn.Module):
    vocab = 1000

    def __init__(self):
        super().__init__()
        self.token_embedding = nn.Embedding(self.vocab, 128)
        self.pos_embedding = nn.Parameter(torch.zeros(1, LENGTH, 128))
        self.dropout = nn.Dropout(0.1)
        self.h = nn.Sequential(GPTBlock(), GPTBlock())
        self.ln_f = nn.LayerNorm(128)
        self.lm_head = nn.Linear(128, self.vocab, bias=False)

    def forward(self, ids):
        x = self.dropout(self.token_embedding(ids) + self.pos_embedding)
        return self.lm_head(self.ln_f(self.h(x)))


def gpt_macs(length: int = LENGTH, d: int = 128, blocks: int = 2, vocab: int = 1000) -> int:
    """Per block: the Q, K, V and output projections (4 L D^2), Q K^T and the weights times V
    (L x L x D each, the causal mask still computes the whole product), the MLP's two dense
    layers (2 x L x D x 4D); then the head L x D x vocab. Embeddings and the position add: 0."""
    block = 4 * length * d * d + 2 * length * length * d + 2 * length * d * 4 * d
    return blocks * block + length * d * vocab


# spec -> (the PyTorch network, its MACs per sentence derived by hand, its output shape)
CASES = {
    # LSTM, per step and direction: input x 4 gates x 128 plus 128 x 4 x 128; layer 1 reads
    # both directions (256); the dense layer 256 x 2; the embedding is a lookup (0)
    "lstm_text_classifier": (LSTMClassifier,
                             64 * 2 * (100 * 512 + 128 * 512) + 64 * 2 * (256 * 512 + 128 * 512)
                             + 256 * 2, (2,)),
    # a width-k conv gives 100 filters at 64 - k + 1 positions, each 128 x k weights; the
    # dense layer 300 x 2; pools and the embedding 0
    "text_cnn": (TextCNN, sum(100 * (64 - k + 1) * 128 * k for k in (3, 4, 5)) + 300 * 2, (2,)),
    "gpt_lm": (GPT, gpt_macs(), (LENGTH, 1000)),
}


def counted_macs(module: nn.Module, ids: torch.Tensor) -> int:
    """PyTorch's count: ATen's LSTM (its matmuls are counted) and the math attention kernel
    (the fused fast path and kernels are invisible to FlopCounterMode)."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.backends.mkldnn.flags(enabled=False), sdpa_kernel(SDPBackend.MATH), \
                torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(ids)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_spec_is_the_pytorch_network(name):
    torch.manual_seed(0)
    network, macs, output_shape = CASES[name]
    reference = network()
    analysis = archspec.analyze(archspec.load(SPECS / f"{name}.yaml"))
    model = archspec.compile(analysis.network)
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    assert analysis.params == sum(p.numel() for p in reference.parameters())
    assert analysis.buffers == 0
    reference.load_state_dict(model.state_dict())
    ids = torch.randint(0, network.vocab, (3, LENGTH))
    ids[0, 40:] = 0  # a short sentence, padded
    model.eval(), reference.eval()
    with torch.no_grad():
        want = reference(ids)
        assert torch.equal(model(ids), want)
    assert analysis.output_shape == output_shape == tuple(want.shape[1:])
    assert analysis.macs == macs == counted_macs(reference, ids[:1])


def test_the_gpt_is_causal():
    """A token's logits do not change when a later token does."""
    torch.manual_seed(0)
    model = archspec.compile(archspec.load(SPECS / "gpt_lm.yaml")).eval()
    ids = torch.randint(0, 1000, (1, LENGTH))
    changed = ids.clone()
    changed[0, 40:] = (ids[0, 40:] + 1) % 1000
    with torch.no_grad():
        before, after = model(ids), model(changed)
    assert torch.allclose(before[0, :40], after[0, :40], atol=1e-6)
    assert not torch.allclose(before[0, 40:], after[0, 40:])

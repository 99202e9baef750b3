"""A compiled spec trains for real: scikit-learn's bundled 8x8 digits, a few epochs on CPU."""
from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import archspec

SPEC = """
name: digits_lenet
input: [1, 8, 8]
layers:
  - type: conv            # frozen Sobel-x filter bank in front: must not change while training
    name: sobel
    out_channels: 1
    kernel_size: 3
    padding: 1
    bias: false
    trainable: false
    weight: [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
  - {type: concat, from: [input, sobel]}                           # 2x8x8
  - {type: conv, out_channels: 16, kernel_size: 3, padding: same, activation: relu}
  - {type: max_pool, kernel_size: 2}                               # 16x4x4
  - {type: conv, out_channels: 32, kernel_size: 3, padding: 1, activation: relu}
  - flatten
  - {type: dropout, p: 0.1}
  - {type: dense, out_features: 10}
"""


def test_lenet_style_spec_learns_digits_and_frozen_weights_stay():
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0,
                                                        stratify=y)
    model = archspec.compile(archspec.loads(SPEC))
    frozen_before = model.sobel.weight.detach().clone()
    assert frozen_before.flatten().tolist() == [-1, 0, 1, -2, 0, 2, -1, 0, 1]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _epoch in range(8):
        model.train()
        for batch in torch.randperm(len(x_train)).split(32):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy >= 0.90, accuracy
    assert torch.equal(model.sobel.weight, frozen_before)

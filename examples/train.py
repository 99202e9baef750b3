"""Train a compiled spec with an ordinary PyTorch loop, in one process or several.

    python examples/train.py specs/lenet5.yaml --steps 20 -o lenet5.pt
    torchrun --nproc-per-node 2 examples/train.py specs/lenet5.yaml --steps 20 -o lenet5.pt

Under torchrun every process trains a DistributedDataParallel replica on its own share of each
batch (the gloo back end, on CPU); rank 0 saves the plain model with archspec.save_checkpoint,
so the keys carry no 'module.' prefix and archspec.load_checkpoint reads the file back.

Data: scikit-learn's 8x8 digits, zero-padded to the spec's input, when the spec takes one
channel of at least 8x8 and predicts at least 10 classes (LeNet-5's 32x32); otherwise random
inputs with random labels of the output's shape, which a model can still learn by heart.
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import archspec

SAMPLES = 512  # random data: enough to see the loss fall in a few steps


def training_data(analysis) -> tuple[torch.Tensor, torch.Tensor]:
    shape, out = analysis.input_shape, analysis.output_shapes[0]
    if len(shape) == 3 and shape[0] == 1 and min(shape[1:]) >= 8 and len(out) == 1 and out[0] >= 10:
        from sklearn.datasets import load_digits
        digits = load_digits()
        x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
        top, left = (shape[1] - 8) // 2, (shape[2] - 8) // 2
        x = F.pad(x, (left, shape[2] - 8 - left, top, shape[1] - 8 - top))
        return x, torch.tensor(digits.target)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLES, *shape, generator=generator)
    return x, torch.randint(out[0], (SAMPLES, *out[1:]), generator=generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64, help="per step, over all processes")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("-o", "--output", required=True, help="checkpoint to write")
    args = parser.parse_args()

    distributed = "RANK" in os.environ  # set by torchrun
    if distributed:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)

    analysis = archspec.analyze(args.spec)
    torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    model = archspec.compile(analysis.network)
    trained = DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    x, y = training_data(analysis)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))

    losses = []
    model.train()
    for step in range(args.steps):
        start = step * args.batch_size % len(x)
        batch = order[start:start + args.batch_size][rank::world]  # this process's share
        output = trained(x[batch])
        loss = F.cross_entropy(output[0] if isinstance(output, tuple) else output, y[batch])
        optimizer.zero_grad()
        loss.backward()  # DDP averages the gradients of every process here
        optimizer.step()
        mean = loss.detach().clone()
        if distributed:
            dist.all_reduce(mean)
            mean /= world
        losses.append(mean.item())
        if rank == 0:
            print(f"step {step + 1}/{args.steps}: loss {losses[-1]:.4f}", flush=True)

    if rank == 0:
        archspec.save_checkpoint(model, args.output)  # the plain model: no 'module.' prefix
        k = max(1, min(5, len(losses) // 4))
        print(f"loss {sum(losses[:k]) / k:.4f} -> {sum(losses[-k:]) / k:.4f} (mean of the first "
              f"and last {k} steps, {world} process{'es' if world > 1 else ''}); "
              f"wrote {args.output}")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

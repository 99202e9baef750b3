"""The zoo's ResNet-18, ResNet-50 and VGG-16 written by hand in plain PyTorch, the way
torchvision writes them (in-place ReLU, `out += identity`), for the benchmarks to compare
against. Not imported by archspec.

    python tools/bench/handwritten.py --torchinfo resnet50   (torchinfo's summary, as a user runs it)
"""
from __future__ import annotations

import sys

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> tuple[nn.Module, nn.Module]:
    return (nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(c_in, width, 3, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv_bn(width, width, 3)
        self.downsample = shortcut(c_in, width, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(c_in, width, 1)
        self.conv2, self.bn2 = conv_bn(width, width, 3, stride)
        self.conv3, self.bn3 = conv_bn(width, width * 4, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(c_in, width * 4, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


def shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(c_out))


class ResNet(nn.Module):
    def __init__(self, block, depths: list[int], classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        c_in, stages = 64, []
        for index, depth in enumerate(depths):
            width = 64 * 2 ** index
            blocks = []
            for k in range(depth):
                blocks.append(block(c_in, width, 2 if k == 0 and index > 0 else 1))
                c_in = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def vgg16(classes: int = 1000) -> nn.Module:
    layers: list[nn.Module] = []
    c_in = 3
    for channels, convs in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(convs):
            layers += [nn.Conv2d(c_in, channels, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = channels
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(),
                         nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Linear(4096, classes))


MODELS = {
    "resnet18": lambda: ResNet(BasicBlock, [2, 2, 2, 2]),
    "resnet50": lambda: ResNet(Bottleneck, [3, 4, 6, 3]),
    "vgg16": vgg16,
}


def torchinfo_summary(name: str) -> None:
    import torchinfo
    torchinfo.summary(MODELS[name](), input_size=(1, 3, 224, 224), verbose=1)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--torchinfo"] or len(sys.argv) != 3 or sys.argv[2] not in MODELS:
        raise SystemExit(f"usage: handwritten.py --torchinfo {'|'.join(MODELS)}")
    torchinfo_summary(sys.argv[2])

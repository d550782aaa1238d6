"""A tiny CNN that exercises what VGG-7 and ResNet-20 need of the tensor core: 3x3 convs with
padding, a channel-gated conv, a stride-2 conv, max-pool, ReLU and an FC layer whose input is
a feature map (so the [row][col][channel] order of FC weights matters)."""

from collections import OrderedDict

import pytest
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers = OrderedDict(
            conv1=nn.Conv2d(3, 32, 3, padding=1, bias=False),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2, 2),
            conv2=nn.Conv2d(32, 32, 3, padding=1, bias=False),  # gated (C = 4 x 8, K = 2 x 16)
            relu2=nn.ReLU(),
            conv3=nn.Conv2d(32, 16, 3, stride=2, padding=1, bias=False),
            relu3=nn.ReLU(),
        )
        self.features = nn.Sequential(layers)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16 * 2 * 2, 10, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.normal_(self.fc.weight, std=0.1)

    def forward(self, x):
        return self.fc(self.flatten(self.features(x)))


@pytest.fixture
def tiny():
    """(model, per-image input shape)."""
    torch.manual_seed(0)
    return Tiny(), (3, 8, 8)


class TinyRes(nn.Module):
    """A residual block without batch norm: relu1's output feeds conv2 and the add, so its
    error is merged from two parts (the program's merge block)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2, 2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16 * 4 * 4, 10, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.normal_(self.fc.weight, std=0.1)

    def forward(self, x):
        r = self.relu1(self.conv1(x))
        return self.fc(self.flatten(self.pool(self.relu2(self.conv2(r) + r))))


@pytest.fixture
def tiny_res():
    torch.manual_seed(0)
    return TinyRes(), (3, 8, 8)

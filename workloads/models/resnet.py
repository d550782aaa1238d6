"""ResNets: ResNet-20 for CIFAR (He et al. 2016, sec. 4.2) and ResNet-18 with two stems.

Shortcuts that change shape use a 1x1 stride-2 conv + batch norm ("option B"): the chip runs
convolutions, and a strided 1x1 conv is a plain tensor-core job, whereas option A's channel
zero-padding would need a special data-movement op.
"""

from __future__ import annotations

from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut; ReLU after the add."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


class ResNet(nn.Module):
    """Generic basic-block ResNet.

    Args:
        widths: channels of each stage; the first block of every stage but the first has stride 2.
        blocks: number of basic blocks per stage.
        stem: "cifar" (3x3 conv, stride 1, no pool) or "imagenet" (7x7/2 conv + 3x3/2 max-pool).
    """

    def __init__(
        self,
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        stem: str,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__()
        w0 = widths[0]
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, w0, 3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(w0)
            self.relu = nn.ReLU()
            self.pool = nn.Identity()
        elif stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, w0, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(w0)
            self.relu = nn.ReLU()
            self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            raise ValueError(f"unknown stem {stem!r}; choose 'cifar' or 'imagenet'")
        stages = []
        c_in = w0
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            layer = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layer.append(BasicBlock(c_in, w, stride))
                c_in = w
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3 = stages[0], stages[1], stages[2]
        self.layer4 = stages[3] if len(stages) > 3 else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def resnet20(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return ResNet((16, 32, 64), (3, 3, 3), "cifar", num_classes, in_channels)


def resnet18(num_classes: int = 10, in_channels: int = 3, stem: str = "cifar") -> ResNet:
    return ResNet((64, 128, 256, 512), (2, 2, 2, 2), stem, num_classes, in_channels)

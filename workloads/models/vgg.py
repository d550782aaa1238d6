"""VGG-7 as in the chip's test vectors: 3x3 convs 32, M, 64, M, 128, M, 128, M, 256, M, FC 256->10.

With a 32x32 input the five 2x2 max-pools leave a 1x1x256 map, so the classifier is one FC layer.
The batch-norm variant puts a BatchNorm2d between every conv and its ReLU (convs then have no
bias, since the norm's shift replaces it).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

# Channel plan; "M" is a 2x2/2 max-pool.
VGG7_PLAN: tuple[int | str, ...] = (32, "M", 64, "M", 128, "M", 128, "M", 256, "M")


class VGG7(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, batch_norm: bool = False):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in, conv_i, pool_i = in_channels, 0, 0
        for item in VGG7_PLAN:
            if item == "M":
                pool_i += 1
                layers[f"pool{pool_i}"] = nn.MaxPool2d(2, 2)
                continue
            conv_i += 1
            c_out = int(item)
            layers[f"conv{conv_i}"] = nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)
            if batch_norm:
                layers[f"bn{conv_i}"] = nn.BatchNorm2d(c_out)
            layers[f"relu{conv_i}"] = nn.ReLU()
            c_in = c_out
        self.features = nn.Sequential(layers)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)
        # He init: without batch norm, torch's default conv init shrinks the signal through
        # the five layers and an MSE-trained VGG-7 barely moves in its first epochs.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # A small classifier init keeps the first MSE errors O(1) instead of O(fan-in).
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        return self.fc(self.flatten(self.features(x)))

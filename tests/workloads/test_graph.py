"""Layer graphs: shapes, hand-computed MAC counts, BP accounting and serialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workloads import models
from workloads.graph import GraphError, Layer, LayerGraph, extract_graph, graph_for


@pytest.fixture(scope="module")
def graphs() -> dict[str, LayerGraph]:
    return {name: graph_for(name) for name in models.MODEL_NAMES}


def test_model_names_and_unknown_name():
    assert {"vgg7", "vgg7_bn", "resnet20", "resnet18", "resnet18_imagenet", "mobilenet_v1"} <= set(
        models.MODEL_NAMES
    )
    with pytest.raises(models.UnknownModelError, match=r"valid names are: .*resnet20"):
        models.build("resnet21")


@pytest.mark.parametrize("name", ["vgg7", "resnet20", "mobilenet_v1_half"])
def test_models_run_and_output_logits(name):
    m = models.build(name, num_classes=7, in_channels=1)
    y = m(torch.zeros((2, *models.default_input_shape(name, in_channels=1))))
    assert y.shape == (2, 7)


# Hand-computed: MACs = C_out * H_out * W_out * (C_in / groups) * kh * kw; fc = in * out.
HAND_MACS = {
    "vgg7": {
        "features.conv1": 32 * 32 * 32 * 3 * 9,
        "features.conv2": 64 * 16 * 16 * 32 * 9,
        "features.conv5": 256 * 2 * 2 * 128 * 9,
        "fc": 256 * 10,
    },
    "vgg7_bn": {"features.conv3": 128 * 8 * 8 * 64 * 9, "features.conv4": 128 * 4 * 4 * 128 * 9},
    "resnet20": {
        "conv1": 16 * 32 * 32 * 3 * 9,
        "layer2.0.conv1": 32 * 16 * 16 * 16 * 9,  # stride 2
        "layer2.0.shortcut.0": 32 * 16 * 16 * 16,  # 1x1 stride-2 projection
        "layer3.2.conv2": 64 * 8 * 8 * 64 * 9,
        "fc": 64 * 10,
    },
    "resnet18": {"conv1": 64 * 32 * 32 * 3 * 9, "layer4.1.conv2": 512 * 4 * 4 * 512 * 9},
    "resnet18_imagenet": {
        "conv1": 64 * 112 * 112 * 3 * 49,
        "layer1.0.conv1": 64 * 56 * 56 * 64 * 9,
        "layer4.0.conv1": 512 * 7 * 7 * 256 * 9,
    },
    "mobilenet_v1": {
        "blocks.0.dw": 32 * 32 * 32 * 1 * 9,  # depthwise: one input channel per output
        "blocks.0.pw": 64 * 32 * 32 * 32,
        "blocks.1.dw": 64 * 16 * 16 * 9,
        "fc": 1024 * 10,
    },
}


@pytest.mark.parametrize("name", sorted(HAND_MACS))
def test_mac_counts_against_hand_values(graphs, name):
    g = graphs[name]
    for layer_name, macs in HAND_MACS[name].items():
        assert g.layer(layer_name).macs_fwd == macs, layer_name


def test_resnet20_total_and_structure(graphs):
    g = graphs["resnet20"]
    convs = [x for x in g.layers if x.kind == "conv"]
    assert len(convs) == 19 + 2  # 19 convs + 2 projection shortcuts
    # stem + 6 stage-1 convs + 2 x (one stride-2 conv + 5 convs) + fc, by hand (the known
    # 40.55 M of ResNet-20), plus the two 1x1 projections (2 x 131072).
    by_hand = 442_368 + 6 * 2_359_296 + 2 * (1_179_648 + 5 * 2_359_296) + 640
    assert by_hand == 40_551_040
    assert g.macs_fwd_per_image == by_hand + 262_144
    adds = [x for x in g.layers if x.kind == "add"]
    assert len(adds) == 9 and all(len(a.inputs) == 2 for a in adds)


def test_vgg7_shapes(graphs):
    g = graphs["vgg7"]
    assert g.layer("features.conv1").in_shape == (3, 32, 32)
    assert g.layer("features.pool5").out_shape == (256, 1, 1)
    assert g.layer("fc").in_shape == (256,) and g.layer("fc").out_shape == (10,)
    conv = g.layer("features.conv2")
    assert (conv.kernel, conv.stride, conv.padding, conv.groups) == ((3, 3), (1, 1), (1, 1), 1)
    assert g.layer("features.pool1").kind == "maxpool"
    assert g.layer("features.pool1").kernel == (2, 2)


def test_depthwise_groups(graphs):
    layer = graphs["mobilenet_v1"].layer("blocks.3.dw")
    assert layer.groups == layer.in_channels == layer.out_channels


def test_train_macs_first_conv_has_no_bp(graphs):
    g = graphs["vgg7"]
    mac = g.mac_layers
    assert not g.needs_data_gradient(mac[0].name)
    assert all(g.needs_data_gradient(x.name) for x in mac[1:])
    expected = 2 * mac[0].macs_fwd + sum(3 * x.macs_fwd for x in mac[1:])
    assert g.macs_train_per_image_dense == expected
    assert g.macs_train_per_image_dense == 3 * g.macs_fwd_per_image - mac[0].macs_fwd


def test_round_trip(graphs):
    for g in graphs.values():
        assert LayerGraph.from_dict(g.to_dict()) == g


def test_from_dict_errors():
    g = graph_for("vgg7")
    d = g.to_dict()
    d["layers"][3]["inputs"] = ["nonexistent"]
    with pytest.raises(GraphError, match="nonexistent"):
        LayerGraph.from_dict(d)
    with pytest.raises(GraphError, match="unknown kind"):
        Layer("a", "softmax", (), (1,), (1,))


def test_untraceable_and_unsupported():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(GraphError, match="cannot trace"):
        extract_graph(Branchy(), (1, 4, 4))

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.GELU()

        def forward(self, x):
            return self.act(x)

    with pytest.raises(GraphError, match="GELU"):
        extract_graph(Odd(), (1, 4, 4))


def test_extract_keeps_training_mode():
    m = models.build("vgg7_bn")
    m.train()
    extract_graph(m, (3, 32, 32))
    assert m.training

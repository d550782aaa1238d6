"""CNN models, the sparse FP8 training recipe, data loaders and sparsity traces.

- `workloads.models`: VGG-7 (+BN), ResNet-20, ResNet-18 (CIFAR / ImageNet stems), MobileNet-v1.
- `workloads.graph`: the layer graph of a model (torch.fx), with per-layer MAC counts.
- `workloads.data`: sklearn digits, a procedural set, CIFAR-10 (binary files from disk).
- `workloads.recipe`: FP8 training with channel gating, group-Lasso and gradient skipping.
- `workloads.trace`: the trace file format, synthetic traces, summaries (docs/traces.md).
- `workloads.evidence`: dense fp32 vs sparse FP8 on digits (`python -m workloads.evidence`).
"""

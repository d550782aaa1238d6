"""CNN models, the sparse FP8 training recipe, data loaders and sparsity traces.

Not written yet (issue "Workloads"); nothing here is usable today.
"""

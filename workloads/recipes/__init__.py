"""Shipped recipe configurations (YAML, loadable with `workloads.recipe.load_config`)."""

from pathlib import Path

RECIPES_DIR = Path(__file__).parent


def recipe_path(name: str) -> Path:
    """Path of a shipped recipe, e.g. `recipe_path("digits_sparse_fp8")`."""
    p = RECIPES_DIR / f"{name}.yaml"
    if not p.is_file():
        names = sorted(q.stem for q in RECIPES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no shipped recipe {name!r}; shipped: {', '.join(names)}")
    return p

"""fp8sim: functional and cycle-level simulator of a sparse FP8 CNN training accelerator."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fp8sim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

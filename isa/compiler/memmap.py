"""The DRAM memory map of a compiled program: one region per tensor, 64-byte aligned."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ALIGN = 64


class CompileError(ValueError):
    """A graph or configuration the compiler cannot map onto the hardware."""


@dataclass(frozen=True)
class Region:
    """One DRAM tensor. `shape` is per image for batched tensors (`batched` true)."""

    name: str
    kind: str  # activation, error, weight, momentum, group_map, gate_map, argmax, ...
    addr: int
    nbytes: int
    shape: tuple[int, ...]
    layout: str
    dtype: str
    batched: bool
    layer: str

    def shifted(self, offset: int) -> Region:
        """The same tensor addressed from `offset` bytes in (e.g. a tile's first channel)."""
        from dataclasses import replace

        return replace(self, addr=self.addr + offset)

    @property
    def bytes_per_image(self) -> int:
        return self.nbytes // self.batch if self.batched else self.nbytes

    @property
    def batch(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return max(1, self.nbytes // n) if self.batched else 1


@dataclass
class MemoryMap:
    """Bump allocator over DRAM; `aliases` name regions that share another's storage."""

    capacity: int
    regions: dict[str, Region] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    # tensors that never reach DRAM: name -> where they live (e.g. fused into a block)
    on_chip: dict[str, str] = field(default_factory=dict)
    # tensors stored although no block reads them back: name -> why (the rounding record of a
    # value a fused block consumed on chip, which `fp8sim verify`'s reference reads)
    records: dict[str, str] = field(default_factory=dict)
    # whether the program stores the records (compiled with `records=True`, for `fp8sim
    # verify`); without, their regions stay allocated (same addresses) but are never written
    records_stored: bool = True
    top: int = 0

    def add(
        self,
        name: str,
        kind: str,
        shape: tuple[int, ...],
        *,
        batch: int | None,
        layer: str,
        layout: str,
        dtype: str = "fp8",
        elem_bytes: int = 1,
    ) -> Region:
        if name in self.regions or name in self.aliases:
            raise CompileError(f"memory map: duplicate tensor {name!r}")
        n = elem_bytes
        for s in shape:
            n *= s
        n *= batch or 1
        addr = self.top
        self.top = -(-(addr + n) // ALIGN) * ALIGN
        if self.top > self.capacity:
            raise CompileError(
                f"memory map: {name} ({n} bytes) does not fit in the configured DRAM "
                f"({self.capacity} bytes); use a smaller batch"
            )
        reg = Region(name, kind, addr, n, shape, layout, dtype, batch is not None, layer)
        self.regions[name] = reg
        return reg

    def keep_on_chip(self, name: str, where: str) -> None:
        """Record a tensor that stays in an on-chip buffer and has no DRAM region."""
        if name in self.regions or name in self.aliases:
            raise CompileError(f"memory map: {name!r} is already in DRAM")
        self.on_chip[name] = where

    def alias(self, name: str, target: str) -> None:
        self.aliases[name] = self.resolve_name(target)

    def resolve_name(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def __getitem__(self, name: str) -> Region:
        name = self.resolve_name(name)
        if name in self.on_chip:
            raise CompileError(f"memory map: {name!r} has no DRAM region ({self.on_chip[name]})")
        return self.regions[name]

    def __contains__(self, name: str) -> bool:
        return self.resolve_name(name) in self.regions

    def to_dict(self) -> dict:
        return {
            "dram_bytes_used": self.top,
            "dram_capacity_bytes": self.capacity,
            "alignment_bytes": ALIGN,
            "regions": [
                {**asdict(r), "shape": list(r.shape), "end": r.addr + r.nbytes}
                for r in sorted(self.regions.values(), key=lambda r: r.addr)
            ],
            "aliases": dict(sorted(self.aliases.items())),
            "on_chip": dict(sorted(self.on_chip.items())),
            "records": dict(sorted(self.records.items())),
            "records_stored": self.records_stored,
        }

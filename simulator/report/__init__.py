"""The speedup/energy report: Markdown + HTML, PNG figures, CSV/JSON data of every figure."""

from simulator.report.writer import ReportError, write_report

__all__ = ["ReportError", "write_report"]

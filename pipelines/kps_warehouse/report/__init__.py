"""The HTML report: the notebook in `notebooks/`, executed read-only over the marts."""

from kps_warehouse.report.notebook import ReportError, render

__all__ = ["ReportError", "render"]

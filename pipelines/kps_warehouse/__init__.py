"""Huawei Cloud KPS failed key-pair tasks, kept as history, with trend models and a report.

The flow, one way: `source` (config, HTTP client, dlt source) → `load` (one dlt run) →
`transform` (the SQL models in `sql/`) → `report` (the notebook) ; `ops` holds what operates
them: the warehouse lock and publish, status, the demo and the command line. `connect()` opens
the warehouse from Python, read-only, at the newest published run.
"""

from kps_warehouse.connection import connect

__all__ = ["connect"]

"""Named points where a run can be made to kill itself, for the crash tests.

`KPS_WAREHOUSE_CRASH_AT=<point>` makes the process write one line naming the point to stderr
and then SIGKILL itself when it gets there: no cleanup, no `finally`, as if the machine died.
The test sees the line, so it knows the point was reached, and not merely that the run died.
Unset (always, outside tests), a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENVIRONMENT_VARIABLE = "KPS_WAREHOUSE_CRASH_AT"

# In the order a run passes them.
POINTS = (
    "mid-extract",  # the first project read and its rows spilled; nothing handed to dlt yet
    "after-extract",  # dlt's load package extracted, nothing normalized
    "mid-normalize",  # a file of the package normalized, the package not committed
    "mid-load",  # a load job committed to the warehouse, the package not finished
    "mid-build",  # a whole build's first model made beside the live one, committed, not in place
    "mid-transform",  # every model built in the build's transaction, nothing of it committed
    "before-publish",  # loaded (and transformed) in the writer copy, nothing published
    "mid-publish",  # the writer copy checkpointed, not yet renamed over the published file
)


def crash_point(name: str) -> None:
    """Dies here when `KPS_WAREHOUSE_CRASH_AT` names this point."""
    if os.environ.get(ENVIRONMENT_VARIABLE) != name:
        return
    os.write(2, f"kps-warehouse: crash point {name} reached\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)

"""Constants of the KPS failed-tasks API and of the tables this source loads."""

import pyarrow as pa

DEFAULT_ENDPOINT = "https://kms.{region}.myhuaweicloud.com"
FAILED_TASKS_PATH = "/v3/{project_id}/failed-tasks"

# The API's documented bounds for `limit` and `offset`.
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 1000
MAX_OFFSET = 100_000

# A project's pass is re-read this many times when the list shifts under it; after that the
# run keeps what it read and clears nothing in that project.
MAX_PASSES = 3

# Requests in flight at most, across all projects. Projects are taken one region at a time in
# turn, so with many regions no one region's gateway sees them all.
DEFAULT_CONCURRENCY = 32

# Rows per chunk of the spill: hashed and written together as projects finish, and handed to
# dlt as one arrow table. Small enough that even a short run's hashing overlaps its requests;
# dlt's cost is per table, but at this size it extracts as fast as in larger ones.
ROWS_PER_TABLE = 20_000

# The fields of a FailedTasks record, and the ones a record cannot be loaded without.
TASK_FIELDS = (
    "task_id",
    "operate_type",
    "task_time",
    "task_error_code",
    "task_error_msg",
    "server_name",
    "server_id",
    "keypair_name",
)

# Epoch milliseconds outside this window are not task times but garbage (2000-01-01..2100-01-01).
MIN_TASK_TIME_MS = 946_684_800_000
MAX_TASK_TIME_MS = 4_102_444_800_000

FAILED_TASKS_SCHEMA = pa.schema(
    [
        pa.field("project_id", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("operate_type", pa.string()),
        pa.field("task_time", pa.string()),
        pa.field("failed_at", pa.timestamp("us", tz="UTC")),
        pa.field("task_error_code", pa.string()),
        pa.field("task_error_msg", pa.string()),
        pa.field("server_name", pa.string()),
        pa.field("server_id", pa.string()),
        pa.field("keypair_name", pa.string()),
        pa.field("extra_fields", pa.string()),
        pa.field("row_hash", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)
# The same without row_hash: what one project's read becomes before the hashes are added.
TASKS_SCHEMA = pa.schema([f for f in FAILED_TASKS_SCHEMA if f.name != "row_hash"])

# What a page's loadable records become: the documented fields as delivered, and the rest.
PAGE_TASKS_SCHEMA = pa.schema(
    [pa.field(name, pa.string()) for name in (*TASK_FIELDS, "extra_fields")]
)

REJECTED_RECORDS_SCHEMA = pa.schema(
    [
        pa.field("resource", pa.string(), nullable=False),
        pa.field("project_id", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("rejected_at", pa.timestamp("us", tz="UTC"), nullable=False),
        # the reject's place among its project's rejects in the run: a reject's identity, as a
        # bad record may have none (nullable: rows loaded before it was added have no number)
        pa.field("reject_number", pa.int64()),
    ]
)

RUNS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("project_id", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("started_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("finished_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("tasks_seen", pa.int64(), nullable=False),
        pa.field("rejected", pa.int64(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("complete", pa.bool_(), nullable=False),
        pa.field("note", pa.string()),
        pa.field("pages", pa.int64(), nullable=False),
        pa.field("requests", pa.int64(), nullable=False),
    ]
)

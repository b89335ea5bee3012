"""The results schema (version 1). Documented in docs/results-schema.md; bump SCHEMA_VERSION on change.

results/<run>/
  manifest.json                 what ran: config, model identity, task specs + fingerprints, prompts,
                                seed, devices, package versions, code version, times, status
  metrics.json                  per task and per group: metric -> value + 95% interval, metadata
  tasks/<task>/chunks/*.parquet one file per finished chunk (written atomically; resume skips them)
  tasks/<task>/rows.parquet     all rows of the task, in sample order (written at the end)
Every row has the BASE_COLUMNS, then the task type's own columns.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

BASE_COLUMNS: list[tuple[str, str]] = [
    ("sample_id", "string"),     # unique within the task
    ("sample_index", "int64"),   # position in the task's sample order
    ("image_id", "string"),      # the bootstrap and chunking unit
    ("image", "string"),         # where the image was read from
    ("error", "string"),         # null, or why this sample failed (its other outputs are null)
]


def arrow_schema(task_columns: list[tuple[str, str]]):
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "double": pa.float64(), "bool": pa.bool_(),
             "list<string>": pa.list_(pa.string()), "list<double>": pa.list_(pa.float64()),
             "list<int64>": pa.list_(pa.int64())}
    return pa.schema([(name, types[kind]) for name, kind in BASE_COLUMNS + task_columns])

"""Airflow DAG: the same `kps-warehouse run` a cron job runs, every 15 minutes.

Copy to the DAGs folder. KPS_WAREHOUSE_HOME is the clone (with its .venv/), KPS_WAREHOUSE_WORKDIR
the working directory holding .dlt/ and warehouse/; put the credentials in an Airflow connection
or the worker's environment (SOURCES__KPS__CREDENTIALS__AUTH_TOKEN), never in this file. A plain
BashOperator keeps the run in its own process: dlt, DuckDB and the lock behave exactly as under
cron, and Airflow only schedules and alerts. Exit 3 (some projects failed) fails the task.
"""

import os
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

HOME = os.environ.get("KPS_WAREHOUSE_HOME", "/opt/kps-warehouse")
WORKDIR = os.environ.get("KPS_WAREHOUSE_WORKDIR", "/var/lib/kps-warehouse")

with DAG(
    dag_id="kps_warehouse",
    description="Huawei Cloud KPS failed tasks into DuckDB, with trend models",
    schedule=timedelta(minutes=15),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=2)},
    tags=["kps", "dlt", "duckdb"],
) as dag:
    run = BashOperator(
        task_id="run",
        bash_command=f"cd {WORKDIR} && {HOME}/.venv/bin/kps-warehouse run --log-format json",
        execution_timeout=timedelta(minutes=30),
    )
    freshness = BashOperator(
        task_id="status",
        bash_command=f"cd {WORKDIR} && {HOME}/.venv/bin/kps-warehouse status --max-age 2h",
    )
    run >> freshness

"""Orchestration: Airflow DAGs generated from a project's plan (the optional extra ``airduck[airflow]``).

- :mod:`airduck.orchestrate.config` the ``airflow:`` block of airduck.yml (no Airflow import)
- :mod:`airduck.orchestrate.files`  the plan snapshot/cache and the DAG files `airduck airflow dags` writes
- :mod:`airduck.orchestrate.dags`   the DAG factory: the only module that imports Airflow
"""

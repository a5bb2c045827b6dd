#!/bin/bash
# First start of the stack's PostgreSQL: one role and database per user of it (passwords from the environment).
#   airduck_catalog  the lake's DuckLake catalog     marts    the serving database (`serve: postgres:`)
#   airflow          Airflow's metadata database      marquez  Marquez (profile `lineage`)
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v airduck_pw="$AIRDUCK_DB_PASSWORD" -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v marquez_pw="$MARQUEZ_DB_PASSWORD" <<'SQL'
CREATE ROLE airduck LOGIN PASSWORD :'airduck_pw';
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE ROLE marquez LOGIN PASSWORD :'marquez_pw';
CREATE DATABASE airduck_catalog OWNER airduck;
CREATE DATABASE marts OWNER airduck;
CREATE DATABASE airflow OWNER airflow;
CREATE DATABASE marquez OWNER marquez;
SQL

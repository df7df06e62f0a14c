#!/usr/bin/env bash
# Installs DuckDB's Python package (PyPI) into a virtual environment under
# target/tools/duckdb, when it is not there yet, and prints that
# environment's python. tests/nexmark_oracle.rs runs each Nexmark query's
# SQL in DuckDB (bench/nexmark/oracle.py) and compares its answer with
# weir's committed Parquet output.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${WEIR_TOOLS:-$PWD/target/tools}/duckdb"
if ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet duckdb >&2
fi
echo "$venv/bin/python"

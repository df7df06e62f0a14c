#!/usr/bin/env bash
# Installs pyarrow (PyPI) into a virtual environment under
# target/tools/arrow, when it is not there yet, and prints that
# environment's python. tests/file_rolling.rs reads the file sink's rolled
# Parquet files with it, as a user's query engine would.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${WEIR_TOOLS:-$PWD/target/tools}/arrow"
if ! "$venv/bin/python" -c 'import pyarrow.parquet' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet pyarrow >&2
fi
echo "$venv/bin/python"

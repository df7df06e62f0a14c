#!/usr/bin/env bash
# Installs the OpenTelemetry Python SDK and its OTLP/HTTP exporter (PyPI)
# into a virtual environment under target/tools/otel, when they are not
# there yet, and prints that environment's python. tests/otlp_source.rs
# exports logs to the `otlp` source with them, as an instrumented Python
# service would.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${WEIR_TOOLS:-$PWD/target/tools}/otel"
check='from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter'
if ! "$venv/bin/python" -c "$check" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet \
    opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2 >&2
fi
echo "$venv/bin/python"

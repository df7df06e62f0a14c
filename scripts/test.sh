#!/usr/bin/env bash
# Runs weir's whole test suite. This is the README's test command and what
# .ci/run runs after the format and lint checks. It needs the Rust toolchain,
# a Linux kernel with io_uring, cmake, a C++ compiler and OpenSSL's headers
# (librdkafka is built from source), promtool and PostgreSQL, which it
# installs first when they are missing: scripts/install-build-deps.sh,
# scripts/install-promtool.sh (the metrics
# tests lint with it) and scripts/start-postgres.sh (Debian's package; it
# starts a throwaway cluster on 127.0.0.1 for the `postgres` sink's tests).
# The Kafka tests get a real broker from scripts/start-kafka.sh (Kafka 4.4's
# jars from Maven Central, cached; it installs Java 17 and Maven when they
# are missing), a single node on 127.0.0.1 whose address it exports as
# WEIR_TEST_KAFKA_BOOTSTRAP.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-build-deps.sh
scripts/install-promtool.sh
WEIR_TEST_POSTGRES_URL="$(scripts/start-postgres.sh)"
export WEIR_TEST_POSTGRES_URL
WEIR_TEST_KAFKA_BOOTSTRAP="$(scripts/start-kafka.sh)"
export WEIR_TEST_KAFKA_BOOTSTRAP

# glommio locks memory for its io_uring buffers; raise the soft limit as far
# as the hard limit allows (a privileged user is not bound by it anyway).
ulimit -l "$(ulimit -H -l)" 2>/dev/null || true

cargo test --workspace --locked

#!/usr/bin/env bash
# Installs what building weir needs besides the Rust toolchain: librdkafka
# (the `kafka` source and sink, through rdkafka-sys) is built from source
# with cmake and a C++ compiler, and links OpenSSL found by pkg-config.
#
# Idempotent: if cmake, c++, pkg-config, OpenSSL's headers, gdb, curl, gzip,
# zstd, Python's venv and the openssl tool are there it installs nothing.
# Otherwise it installs Debian's `cmake`, `g++`, `pkg-config`,
# `libssl-dev`, `gdb`, `curl`, `gzip`, `zstd`, `python3-venv` and
# `openssl` with apt-get (sudo when not root). gdb, curl, gzip and zstd are for
# the tests only: a `weir` run that hangs is reported with its threads'
# stacks (tests/support/mod.rs, `thread_stacks`), and the http source's
# tests post compressed bodies with curl as a user would.
# .ci/run and scripts/test.sh run it before anything compiles.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v gdb >/dev/null 2>&1 || missing+=(gdb)
# The http source's tests post with curl, compressed by gzip and zstd.
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v gzip >/dev/null 2>&1 || missing+=(gzip)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
# The otlp source's tests export with the OpenTelemetry Python SDK, in a
# virtual environment (scripts/install-otel-python.sh).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# The TLS tests' PostgreSQL gets its certificate from the openssl tool
# (scripts/start-postgres.sh with WEIR_TEST_POSTGRES_SSL=1).
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ! pkg-config --exists openssl 2>/dev/null; then
    missing+=(libssl-dev)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-build-deps.sh: missing ${missing[*]} and apt-get is not available;" >&2
    echo "install them by hand (librdkafka is built from source with them)." >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-build-deps.sh: not root and sudo is not available." >&2
        exit 1
    fi
fi
echo "install-build-deps.sh: installing ${missing[*]}" >&2
${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update >&2
${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}" >&2

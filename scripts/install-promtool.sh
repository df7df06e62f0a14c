#!/usr/bin/env bash
# Installs promtool (Prometheus' checker for the text exposition format),
# which runtime/tests/metrics_promtool.rs needs to lint the metrics that
# weir-runtime renders.
#
# Idempotent: if `promtool` is already on PATH it installs nothing. Otherwise
# it installs Debian's/Ubuntu's `prometheus` package, which ships promtool,
# using sudo when not run as root. It prints `promtool --version` at the end.
set -euo pipefail

if ! command -v promtool >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-promtool.sh: promtool is missing and apt-get is not available;" >&2
        echo "install promtool (part of Prometheus) by hand and put it on PATH." >&2
        exit 1
    fi

    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo)
        else
            echo "install-promtool.sh: not root and sudo is not available." >&2
            exit 1
        fi
    fi

    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine (or container) may have empty package lists.
    ${SUDO[@]+"${SUDO[@]}"} apt-get update
    ${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends prometheus

    hash -r
    if ! command -v promtool >/dev/null 2>&1; then
        echo "install-promtool.sh: installed 'prometheus' but promtool is not on PATH." >&2
        exit 1
    fi
fi

promtool --version

#!/usr/bin/env bash
# Sabot vs Apache Flink side by side. Usage: benches/compare/run.sh [compare.py options]
#   e.g. benches/compare/run.sh --events 4000000 --runs 2     (see --help)
#        benches/compare/run.sh --suite nexmark-files        (the same Nexmark files on both)
# Creates (once) a virtualenv with apache-flink in $SABOT_FLINK_VENV (default
# ~/.cache/sabot-flink-venv) and runs compare.py with the Sabot release binary.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
flink_version="2.3.0"
venv="${SABOT_FLINK_VENV:-$HOME/.cache/sabot-flink-venv}"
sabot="${SABOT_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/sabot-target}/release/sabot}"

if ! command -v java >/dev/null 2>&1; then
    echo "run.sh: no 'java' on PATH. PyFlink $flink_version needs a Java 11, 17 or 21 runtime" >&2
    echo "        (Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless)." >&2
    exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "run.sh: no 'python3' on PATH (PyFlink $flink_version needs Python 3.9-3.12)." >&2
    exit 1
fi

# The venv is ready when its python imports pyflink of the right version.
if ! "$venv/bin/python" -c "import sys, pyflink.version as v; sys.exit(v.__version__ != '$flink_version')" \
        >/dev/null 2>&1; then
    echo "run.sh: installing apache-flink==$flink_version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "apache-flink==$flink_version"
fi

if [[ ! -x "$sabot" ]]; then
    echo "run.sh: no Sabot binary at $sabot: build it with 'cargo build --release'" >&2
    echo "        (or point SABOT_BIN / CARGO_TARGET_DIR at it)." >&2
    exit 1
fi

exec "$venv/bin/python" "$here/compare.py" --sabot "$sabot" --flink-python "$venv/bin/python" "$@"

#!/usr/bin/env bash
# Builds the documentation site (mkdocs.yml) with warnings as errors.
#
#   bash tools/build_docs.sh [OUTPUT_DIR]        (default: build/site)
#
# Installs nothing: $PYTHON (default python3) must have the `docs` extra's packages
# (`pip install ".[docs]"`, or `pip install -r` of that list into a venv) and jaxmg's own
# dependencies (jax, numpy, scipy): the API reference imports jaxmg from python/ of this
# checkout to read its docstrings. JAX runs on CPU for that; no device is used.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${1:-build/site}
if ! "$PY" -c "import mkdocs, mkdocstrings_handlers.python" 2>/dev/null; then
  echo "tools/build_docs.sh: $PY lacks mkdocs/mkdocstrings[python]; install the docs extra: $PY -m pip install '.[docs]'" >&2
  exit 2
fi
JAX_PLATFORMS=cpu PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}" \
  "$PY" -m mkdocs build --strict --config-file mkdocs.yml -d "$OUT"
echo "tools/build_docs.sh: site in $OUT"

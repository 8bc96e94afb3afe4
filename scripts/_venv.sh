# Shared set-up for scripts/run and scripts/test: create .venv if needed and
# (re)install the project (which compiles streamer/_sketch.c; gcc and the Python
# headers are needed) when its metadata or C source is newer than the last install.
# Sourced, not executed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STREAMER_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.streamer-installed-$1"
# reinstall when the project's metadata or the C extension changed (or it is missing)
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "$ROOT/setup.py" -nt "$STAMP" ] \
        || [ "$ROOT/streamer/_sketch.c" -nt "$STAMP" ] \
        || ! ls "$ROOT"/streamer/_sketch*.so >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
    if [ "$1" = test ]; then
        "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]"
    else
        "$VENV/bin/python" -m pip install --quiet -e "$ROOT"
    fi
    touch "$STAMP"
fi

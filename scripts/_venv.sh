# Shared set-up for scripts/run and scripts/test: create .venv if needed and
# (re)install the project (which compiles the C extensions in streamer/core/; gcc and the Python
# headers are needed) when its metadata or C source is newer than the last install.
# Sourced, not executed.
#
# STREAMER_VENV=DIR uses an environment that scripts/run or scripts/test already set up
# (in this checkout or another) as it is: nothing is created or installed, and the
# streamer it runs is the one installed there. tests/test_readme.py runs the README's
# commands in fresh clones this way without building a venv for each.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${STREAMER_VENV:-}" ]; then
    VENV="$STREAMER_VENV"
    if [ ! -x "$VENV/bin/streamer" ]; then
        echo "STREAMER_VENV=$VENV: no streamer installed there (no $VENV/bin/streamer)" >&2
        exit 2
    fi
    return 0
fi
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.streamer-installed-$1"
# reinstall when the project's metadata or a C extension changed (or one is not built)
stale=0
for c in "$ROOT"/streamer/*/*.c; do
    so=$(ls "${c%.c}".*.so 2>/dev/null | head -n 1 || true)
    if [ -z "$so" ] || [ "$c" -nt "$STAMP" ]; then stale=1; fi
done
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "$ROOT/setup.py" -nt "$STAMP" ] \
        || [ "$stale" = 1 ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
    if [ "$1" = test ]; then
        "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]"
    else
        "$VENV/bin/python" -m pip install --quiet -e "$ROOT"
    fi
    touch "$STAMP"
fi

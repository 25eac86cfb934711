#!/bin/sh
# The C hot path under AddressSanitizer and UndefinedBehaviorSanitizer: builds monitors/_speedups.c
# with both into a temporary directory and runs the differential tests (C against the Python
# reference) and the hostile-input fuzz (TRUSTOPS_FUZZ_LINES, 100,000 lines by default) against
# that build. Any sanitizer report fails the run. Leak checking is off (CPython's own allocations).
#     monitors/sanitize.sh [extra pytest args]
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
so="$out/_speedups$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
gcc -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
    -I"$inc" monitors/_speedups.c -o "$so"
TRUSTOPS_MONITOR_SPEEDUPS="$so" \
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
PYTHONMALLOC=malloc \
    "$PY" -m pytest -q -p no:cacheprovider tests/monitors/test_speedups.py tests/monitors/test_hostile_input.py \
    tests/monitors/test_read_boundary.py tests/monitors/test_local_socket.py tests/monitors/test_flood.py "$@"

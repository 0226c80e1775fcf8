#!/usr/bin/env bash
# Print the path of a Python >= 3.12 interpreter: $PYTHON, python3.13/3.12 on PATH, python3 when
# new enough, else the newest 3.12+ under pyenv's versions folder. Exit 1 with a hint when none.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
for c in "${PYTHON:-}" python3.12 python3 python3.13; do
  [ -n "$c" ] || continue
  p=$(command -v "$c" 2>/dev/null) || continue
  if ok "$p"; then echo "$p"; exit 0; fi
done
root="${PYENV_ROOT:-$HOME/.pyenv}"
# 3.12 first (the verified working set), then newer
for p in $(ls -d "$root"/versions/3.12*/bin/python3 2>/dev/null | sort -V -r) \
         $(ls -d "$root"/versions/3.1[3-9]*/bin/python3 2>/dev/null | sort -V); do
  if ok "$p"; then echo "$p"; exit 0; fi
done
echo "no Python >= 3.12 found: install one (e.g. pyenv install 3.12) or set PYTHON=/path/to/python3.12" >&2
exit 1

#!/usr/bin/env bash
# Fails when a tracked C++ file is not clang-formatted (.clang-format at the top).
set -euo pipefail
cd "$1"
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' 2>/dev/null || find . -name '*.[ch]pp' -not -path './build*')
bad=0
for f in "${files[@]}"; do
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then echo "not clang-formatted: $f"; bad=1; fi
done
echo "checked ${#files[@]} files"
exit $bad

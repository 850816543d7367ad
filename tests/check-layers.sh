#!/usr/bin/env bash
# Fails when an include points up the layers, or Asio reaches the pure
# folders (geo, conf, policy): cli -> daemon -> admin -> proxy -> state -> policy -> conf -> geo.
set -euo pipefail
cd "$1"
layers=(geo conf policy state proxy admin daemon cli)
bad=0
for i in "${!layers[@]}"; do
  folder=${layers[$i]}
  above=("${layers[@]:$((i + 1))}")
  ((${#above[@]})) || continue
  pattern="#include \"($(IFS='|'; echo "${above[*]}"))/"
  if hits=$(grep -rnE "$pattern" "$folder" --include='*.cpp' --include='*.hpp'); then
    echo "$folder/ includes a folder above it:"
    echo "$hits"
    bad=1
  fi
done
if hits=$(grep -rnE '#include <boost/(asio|beast)' geo conf policy --include='*.cpp' --include='*.hpp'); then
  echo "Asio or Beast in the pure folders:"
  echo "$hits"
  bad=1
fi
# state/ drives Redis on Asio (DESIGN.md), but serves no HTTP.
if hits=$(grep -rnE '#include <boost/beast' state --include='*.cpp' --include='*.hpp'); then
  echo "Beast in state/:"
  echo "$hits"
  bad=1
fi
# policy/ is pure: no file, socket or clock reads of its own.
if hits=$(grep -rnE '#include <(fstream|filesystem|sys/|unistd\.h|fcntl\.h)|::now\(\)' policy --include='*.cpp' --include='*.hpp'); then
  echo "policy/ reads files or the clock:"
  echo "$hits"
  bad=1
fi
echo "checked ${#layers[@]} layers"
exit $bad

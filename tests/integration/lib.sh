# Shared by the CLI tests: a temp dir, counters and `expect`.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0

ok() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
# expect NAME WANT_EXIT WANT_STDOUT_REGEX WANT_STDERR_REGEX -- COMMAND...
expect() {
  local name=$1 code=$2 out_re=$3 err_re=$4
  shift 5
  "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local got=$?
  if [[ $got != "$code" ]]; then fail "$name: exit $got, want $code; stderr: $(head -3 "$tmp/err")"; return; fi
  if [[ -n $out_re ]] && ! grep -Eq -- "$out_re" "$tmp/out"; then fail "$name: stdout lacks /$out_re/: $(head -3 "$tmp/out")"; return; fi
  if [[ -n $err_re ]] && ! grep -Eq -- "$err_re" "$tmp/err"; then fail "$name: stderr lacks /$err_re/: $(head -3 "$tmp/err")"; return; fi
  if [[ $code == 0 && -s $tmp/err ]]; then fail "$name: unexpected stderr: $(head -3 "$tmp/err")"; return; fi
  ok
}
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed == 0 ]]
}

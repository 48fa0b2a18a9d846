# Sourced by the test scripts (POSIX sh or bash): the one place that decides
# what a missing tool (Java, Maven, a Kafka download, python3) means. On a
# developer's machine the test is skipped with the reason (exit 77, CTest's
# SKIP_RETURN_CODE); with CI=true (or 1) in the environment, as .ci/run
# exports it, it fails with the reason instead, so CI cannot pass without
# having run it. tests/test_util.h (VARVE_SKIP_OR_FAIL_IN_CI) is its C++ twin.

varve_in_ci() {
  [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]
}

# varve_skip_or_fail_in_ci REASON...: exits 77, or 1 under CI.
varve_skip_or_fail_in_ci() {
  if varve_in_ci; then
    echo "FAIL (CI=${CI}, so this is not skipped): $*" >&2
    exit 1
  fi
  echo "SKIP: $*"
  exit 77
}

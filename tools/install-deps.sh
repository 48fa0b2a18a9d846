#!/usr/bin/env bash
# Installs (from Debian 12's packages) what building and testing varve needs,
# skipping apt entirely when everything is already there.
#   --fuzz   also what the libFuzzer targets in fuzz/ need (clang-14 and its
#            sanitizer/fuzzer runtime); see fuzz/README.md.
#   --bench  also what bench/plot.py draws varve-bench's figures with
#            (Debian's matplotlib, for /usr/bin/python3), and --kafka's.
#   --kafka  also Java 17 and Maven, which tools/kafka/broker runs a real local
#            Kafka broker with (for `varve ship`'s tests and varve-bench's
#            Kafka peer; the library and the CLI never need them). Without
#            them those tests skip, saying why.
set -euo pipefail
# python3: tests/cli_test.sh and the Kafka tests check JSON with it;
# python3-venv, python3-dev: the Python package (python/) and its tests.
# fuse3, libfuse3-dev: the FUSE file system the power-loss test on a real
# mount is built on.
pkgs=(g++ cmake ninja-build pkg-config
      libboost-dev libxxhash-dev liburing-dev libzstd-dev libsodium-dev
      libgtest-dev libgmock-dev libbenchmark-dev librocksdb-dev
      nlohmann-json3-dev libcli11-dev librdkafka-dev
      python3 python3-venv python3-dev fuse3 libfuse3-dev)
for arg in "$@"; do
  case "$arg" in
    --fuzz) pkgs+=(clang-14 libclang-rt-14-dev) ;;
    --bench) pkgs+=(python3-matplotlib openjdk-17-jdk-headless maven) ;;
    --kafka) pkgs+=(openjdk-17-jdk-headless maven) ;;
    *) echo "usage: $0 [--fuzz] [--bench] [--kafka]" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

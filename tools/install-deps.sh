#!/usr/bin/env bash
# Installs (from Debian 12's packages) what building and testing varve needs,
# skipping apt entirely when everything is already there.
set -euo pipefail
pkgs=(g++ cmake ninja-build pkg-config
      libboost-dev libxxhash-dev liburing-dev
      libgtest-dev libgmock-dev libbenchmark-dev
      nlohmann-json3-dev libcli11-dev)
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

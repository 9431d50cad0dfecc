#!/usr/bin/env bash
# wrk, the HTTP load generator of bench/http_protocol.py and bench/search_profile.py, from Debian's
# packages. Installs it when missing and apt-get can be used (as root, or with password-less sudo);
# otherwise says why, and those benches stop with the same reason. Separate from
# install_system_packages.sh, which `make test` runs: the tests never need wrk.
set -uo pipefail

command -v wrk >/dev/null 2>&1 && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: wrk missing and no apt-get here: the wrk benches will not run" >&2
  exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo)
  else
    echo "note: wrk missing and apt-get needs root: the wrk benches will not run" >&2
    exit 0
  fi
fi
echo "installing wrk from Debian's packages (for the HTTP benches)"
if ! { "${sudo[@]}" apt-get update -qq &&
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; }; then
  echo "note: installing wrk failed: the wrk benches will not run" >&2
fi
exit 0

#!/usr/bin/env bash
# Debian packages that tests or benchmarks start (Prometheus, nginx, wrk). Installs the missing ones
# when apt-get can be used (as root, or with password-less sudo); otherwise says why, and whatever
# needs them skips (tests) or stops (benches) with the same reason.
#
# Usage: install_system_packages.sh PURPOSE COMMAND[=PACKAGE]...
#   e.g. install_system_packages.sh "the Prometheus and nginx tests" prometheus promtool=prometheus nginx
set -uo pipefail

purpose=$1
shift
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

packages=()
for spec in "$@"; do
  command=${spec%%=*}
  package=${spec#*=}
  if ! have "$command" && [[ " ${packages[*]} " != *" $package "* ]]; then packages+=("$package"); fi
done
[ ${#packages[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: ${packages[*]} missing and no apt-get here: $purpose will not run" >&2
  exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo)
  else
    echo "note: ${packages[*]} missing and apt-get needs root: $purpose will not run" >&2
    exit 0
  fi
fi
echo "installing ${packages[*]} from Debian's packages (for $purpose)"
if ! { "${sudo[@]}" apt-get update -qq &&
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; }; then
  echo "note: installing ${packages[*]} failed: $purpose will not run" >&2
fi
exit 0

#!/usr/bin/env bash
# Real neighbours the tests start: Prometheus (prometheus, promtool) and nginx, from Debian's packages.
# Installs what is missing when apt-get can be used (as root, or with password-less sudo); otherwise
# says why, and the tests that need them skip with the same reason.
set -uo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

packages=()
{ have prometheus && have promtool; } || packages+=(prometheus)
have nginx || packages+=(nginx)
[ ${#packages[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: ${packages[*]} missing and no apt-get here: the Prometheus and nginx tests will skip" >&2
  exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo)
  else
    echo "note: ${packages[*]} missing and apt-get needs root: the Prometheus and nginx tests will skip" >&2
    exit 0
  fi
fi
echo "installing ${packages[*]} from Debian's packages (for the promtool, live Prometheus and nginx tests)"
if ! { "${sudo[@]}" apt-get update -qq &&
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; }; then
  echo "note: installing ${packages[*]} failed: the Prometheus and nginx tests will skip" >&2
fi
exit 0

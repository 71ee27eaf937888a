#!/usr/bin/env bash
# deps.sh -- install what building and testing moonsock needs, from
# Debian's packages, if it is not there yet. Uses sudo when not root.
set -euo pipefail

pkgs=(gcc g++ make cmake pkg-config git lua5.4 liblua5.4-dev lua-busted
      libssl-dev lua-check python3 procps)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "deps.sh: installing ${missing[*]}" >&2
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"

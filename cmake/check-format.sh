#!/usr/bin/env bash
# Checks that every tracked C++ source (*.hpp, *.cpp) is formatted by the
# repository's .clang-format, with Debian 12's clang-format 14 (another
# version may lay out some lines differently). Installs clang-format when it
# is missing and the script runs as root (or with sudo). Lists every file
# that differs and exits 1 then; `cmake/check-format.sh --fix` rewrites them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[check-format] %s\n' "$*" >&2; }

find_tool() {
  local c
  for c in clang-format-14 clang-format; do
    if command -v "$c" >/dev/null 2>&1 && "$c" --version | grep -q "version 14\."; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

tool="$(find_tool || true)"
if [ -z "$tool" ]; then
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi
  log "installing Debian's clang-format (version 14)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends clang-format >/dev/null
  tool="$(find_tool)" || { log "error: clang-format 14 not found after installing"; exit 2; }
fi

mapfile -t files < <(git ls-files '*.hpp' '*.cpp')
if [ "${1:-}" = "--fix" ]; then
  "$tool" -i "${files[@]}"
  log "formatted ${#files[@]} files"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  "$tool" --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  log "${#bad[@]} of ${#files[@]} files are not formatted by .clang-format:"
  printf '  %s\n' "${bad[@]}" >&2
  log "run cmake/check-format.sh --fix"
  exit 1
fi
log "all ${#files[@]} C++ files formatted"

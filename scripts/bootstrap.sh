#!/usr/bin/env bash
# Sourced by tests/run and examples/demo: install what rollover and its tests need, idempotently.
#   - Debian packages (bind9, unbound, openssl...) when a command is missing (needs root or sudo)
#   - a virtualenv in .venv with rollover installed in editable mode (plus test extras if asked)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROLLOVER_VENV:-$ROOT/.venv}"

apt_install_missing() {
    # usage: apt_install_missing command:package ...
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    # policy-rc.d keeps the packages' own daemons from starting: the tests start their own.
    if [ -d /usr/sbin ] && [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
        trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

python_ok() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

make_venv() {
    # usage: make_venv [extras]
    local extras="${1:-}"
    if [ ! -x "$VENV/bin/python" ] || ! python_ok "$VENV/bin/python"; then
        local py="" candidate
        for candidate in python3.13 python3.12 python3.11 python3; do
            if command -v "$candidate" >/dev/null 2>&1 && python_ok "$(command -v "$candidate")"; then
                py="$(command -v "$candidate")"
                break
            fi
        done
        if [ -z "$py" ]; then
            echo "bootstrap: Python >= 3.11 is needed (none of python3.13, 3.12, 3.11, python3 is)" >&2
            exit 1
        fi
        "$py" -m venv "$VENV" 2>/dev/null || { apt_install_missing "false:python3-venv"; "$py" -m venv "$VENV"; }
    fi
    local spec="$ROOT"
    [ -n "$extras" ] && spec="$ROOT[$extras]"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$spec" 2>&1 \
        | grep -v -e "^WARNING: Location" -e "is ignored: it is neither" >&2 || true
    "$VENV/bin/python" -c "import rollover" || { echo "bootstrap: installing rollover failed" >&2; exit 1; }
}

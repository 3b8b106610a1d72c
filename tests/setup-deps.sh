#!/usr/bin/env bash
# Installs what the end-to-end suite needs, when it is missing:
#   - MariaDB server and client, the openssl tool (apt)
#   - Python packages pytest, PyMySQL, mysql-connector-python,
#     prometheus_client, and MariaDB Connector/Python 2.x (pip; a
#     pre-release, pure Python)
#   - Node.js and the mysql2 package (npm, into tests/clients/)
# Idempotent: does nothing when everything is already there.
# Quiet unless something fails; any failure exits non-zero.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
clients="$here/clients"
python="${PYTHON:-python3}"
log="$(mktemp -t myroute-setup-deps.XXXXXX)"
trap 'rm -f "$log"' EXIT

fail() {
    echo "setup-deps: $*" >&2
    if [ -s "$log" ]; then
        echo "---- output ----" >&2
        tail -n 60 "$log" >&2
    fi
    exit 1
}

# Runs a command with its output captured; prints the output only on failure.
quiet() {
    if ! "$@" >>"$log" 2>&1; then
        fail "command failed: $*"
    fi
}

apt_updated=0
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        fail "need root to install Debian packages: $*"
    fi
    if [ "$apt_updated" -eq 0 ]; then
        quiet env DEBIAN_FRONTEND=noninteractive apt-get update -q
        apt_updated=1
    fi
    quiet env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# --- MariaDB ---------------------------------------------------------------
need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb-install-db >/dev/null 2>&1 || [ -x /usr/bin/mariadb-install-db ] || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
# Certificates for the TLS tests are made with the openssl tool.
command -v openssl >/dev/null 2>&1 || need+=(openssl)

# --- Python ----------------------------------------------------------------
command -v "$python" >/dev/null 2>&1 || need+=(python3)
if command -v "$python" >/dev/null 2>&1 && ! "$python" -m pip --version >/dev/null 2>&1; then
    need+=(python3-pip)
fi

# --- Node.js ---------------------------------------------------------------
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)

if [ "${#need[@]}" -gt 0 ]; then
    # shellcheck disable=SC2207
    uniq=($(printf '%s\n' "${need[@]}" | sort -u))
    apt_install "${uniq[@]}"
fi

for tool in mariadbd mariadb-install-db mariadb openssl node npm; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        fail "$tool still missing after installation"
    fi
done

# --- Python packages ---------------------------------------------------------
pip_missing=()
"$python" -c 'import pytest' >/dev/null 2>&1 || pip_missing+=(pytest)
"$python" -c 'import pymysql' >/dev/null 2>&1 || pip_missing+=(PyMySQL)
"$python" -c 'import mysql.connector' >/dev/null 2>&1 || pip_missing+=(mysql-connector-python)
"$python" -c 'import prometheus_client.parser' >/dev/null 2>&1 || pip_missing+=(prometheus_client)
if [ "${#pip_missing[@]}" -gt 0 ]; then
    pip_args=(-m pip install -q --disable-pip-version-check)
    # Debian's own interpreter is "externally managed" (PEP 668).
    if "$python" -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)' 2>/dev/null; then
        pip_args+=(--break-system-packages)
    fi
    quiet "$python" "${pip_args[@]}" "${pip_missing[@]}"
    for mod in pytest pymysql mysql.connector prometheus_client.parser; do
        "$python" -c "import $mod" >/dev/null 2>&1 || fail "python module $mod still missing after pip install"
    done
fi

# MariaDB Connector/Python 2.x (import name `mariadb`): the tests use its
# pure Python implementation, which checks the proof in the OK packet that
# lets a client trust a self-signed certificate.  Only pre-releases exist.
mariadb_v2='import os, sys; os.environ["MARIADB_PYTHON_CONNECTOR"] = "python"; import mariadb; sys.exit(0 if int(mariadb.__version__.split(".")[0]) >= 2 else 1)'
if ! "$python" -c "$mariadb_v2" >/dev/null 2>&1; then
    pip_args=(-m pip install -q --disable-pip-version-check --pre)
    if "$python" -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)' 2>/dev/null; then
        pip_args+=(--break-system-packages)
    fi
    quiet "$python" "${pip_args[@]}" "mariadb>=2.0.0rc2"
    "$python" -c "$mariadb_v2" >>"$log" 2>&1 || fail "MariaDB Connector/Python 2.x still missing after pip install"
fi

# --- Node packages -----------------------------------------------------------
if ! (cd "$clients" && node -e 'require("mysql2")') >/dev/null 2>&1; then
    (cd "$clients" && quiet npm install --no-audit --no-fund --loglevel=error)
    (cd "$clients" && node -e 'require("mysql2")') >>"$log" 2>&1 || fail "node module mysql2 still missing after npm install"
fi

exit 0

#!/usr/bin/env bash
# Install what the Spark and PostgreSQL tests need from Debian when it is missing: a Java 17
# runtime (tests/features/test_spark_parity.py, tests/serving/scoring/test_spark.py) and the
# PostgreSQL server binaries (tests/training/test_tracking_server.py, which starts its own
# server in a temporary data directory). pyspark and psycopg2 come with the dev extra.
set -euo pipefail

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
if [ "${#need[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing ${need[*]} and no apt-get: install them by hand" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null; }
fi
echo "java: $(java -version 2>&1 | head -1)"
echo "postgresql: $(ls -d /usr/lib/postgresql/*/bin | head -1)"

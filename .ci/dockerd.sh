#!/usr/bin/env bash
# Make a Docker daemon answer, and stop only what this script started.
#
#   .ci/dockerd.sh start   # as root: apt-get install docker.io (and debootstrap and
#                          # docker-compose, for offline images and Compose files) if missing,
#                          # start dockerd in the background when no daemon answers, wait
#   .ci/dockerd.sh stop    # stop the dockerd that `start` started (nothing otherwise)
#   .ci/dockerd.sh status  # exit 0 when a daemon answers
#
# The pid of a dockerd we started is kept in $STICKLER_DOCKERD_STATE, so `stop` never
# touches a daemon that was running before us.
set -euo pipefail

STATE=${STICKLER_DOCKERD_STATE:-/run/stickler-dockerd.pid}
LOG=${STICKLER_DOCKERD_LOG:-/var/log/stickler-dockerd.log}
WAIT_S=${STICKLER_DOCKERD_WAIT_S:-60}

answers() { docker info >/dev/null 2>&1; }

install_tools() {
  missing=""
  { command -v dockerd && command -v docker; } >/dev/null 2>&1 || missing="docker.io"
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing="$missing debootstrap"
  command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "dockerd.sh: missing:$missing (as root: apt-get install -y$missing)" >&2
    command -v dockerd >/dev/null 2>&1 || exit 1
    return 0
  fi
  echo "dockerd.sh: installing$missing"
  # The package must not start a system dockerd: this script starts, and stops, its own.
  policy=/usr/sbin/policy-rc.d; made=""; rc=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made=1; fi
  # shellcheck disable=SC2086
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends $missing >/dev/null; } || rc=$?
  if [ -n "$made" ]; then rm -f "$policy"; fi
  return "$rc"
}

start() {
  install_tools
  if answers; then echo "dockerd.sh: a Docker daemon answers already"; return 0; fi
  if answers; then return 0; fi  # the package's own service may have started one
  if [ "$(id -u)" != 0 ]; then
    echo "dockerd.sh: no Docker daemon answers, and starting one needs root" >&2; exit 1
  fi
  echo "dockerd.sh: starting dockerd (log: $LOG)"
  # setsid: the daemon outlives this shell and the caller's process group.
  setsid dockerd >>"$LOG" 2>&1 < /dev/null &
  echo $! > "$STATE"
  for _ in $(seq $((WAIT_S * 5))); do
    if answers; then echo "dockerd.sh: dockerd answers (pid $(cat "$STATE"))"; return 0; fi
    if ! kill -0 "$(cat "$STATE")" 2>/dev/null; then
      echo "dockerd.sh: dockerd exited; its log ends with:" >&2; tail -20 "$LOG" >&2
      rm -f "$STATE"; exit 1
    fi
    sleep 0.2
  done
  echo "dockerd.sh: dockerd did not answer within ${WAIT_S}s; see $LOG" >&2
  exit 1
}

stop() {
  [ -f "$STATE" ] || { echo "dockerd.sh: no dockerd started by us"; return 0; }
  pid=$(cat "$STATE")
  if kill -0 "$pid" 2>/dev/null; then
    echo "dockerd.sh: stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$STATE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

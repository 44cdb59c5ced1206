#!/usr/bin/env bash
# `make run`: the whole pipeline on this machine, in the foreground.
# Starts the local stack (scripts/stack.sh), one producer and one consumer,
# and, when LJ_ALERT_WEBHOOK_URL (or another alert channel) is set, the
# notifier (docs/alerts.md); prints where to send uploads, and on Ctrl-C
# stops everything it started.
# Data stays in $LJ_RUN_DIR (default .run/) for the next run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
# shellcheck source=env.sh
. "$here/env.sh"
bin=${LJ_BIN_DIR:-$top/build}
# The dashboard's files, wherever this script is started from.
export LJ_WEB_DIR=${LJ_WEB_DIR:-$top/web/dashboard}

pids=()
stop() {
    trap "" PIPE    # a closed terminal or pipe must not cut the clean-up short
    trap - INT TERM EXIT
    echo
    echo "run: stopping"
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    "$here/stack.sh" stop
    exit 0
}
trap stop INT TERM EXIT

"$here/stack.sh" start
mkdir -p "$LJ_RUN_DIR/log"
"$bin/ljwx-producer" >>"$LJ_RUN_DIR/log/producer.log" 2>&1 &
pids+=($!)
"$bin/ljwx-consumer" >>"$LJ_RUN_DIR/log/consumer.log" 2>&1 &
pids+=($!)
notifier="not started (set LJ_ALERT_WEBHOOK_URL to deliver alerts)"
if [ -n "${LJ_ALERT_WEBHOOK_URL:-}${LJ_ALERT_WECHAT_URL:-}${LJ_ALERT_DINGTALK_URL:-}${LJ_ALERT_SMS_URL:-}" ]; then
    "$bin/ljwx-notifier" >>"$LJ_RUN_DIR/log/notifier.log" 2>&1 &
    pids+=($!)
    notifier="running: alerts go to the configured channels (docs/alerts.md)"
fi

url="http://$LJ_HTTP_HOST:$LJ_HTTP_PORT"
redis="$LJ_REDIS_HOST:$LJ_REDIS_PORT"
[ -z "${LJ_REDIS_CLUSTER:-}" ] || redis="cluster $LJ_REDIS_CLUSTER, $LJ_STREAM_SHARDS stream shards"
for _ in $(seq 50); do curl -s -o /dev/null "$url/api/health" && break; sleep 0.1; done
cat <<MSG

ljwx-ingest is running (logs in $LJ_RUN_DIR/log/). Send an upload:

  curl -s -X POST $url/upload_health_data_v2 -d '{"data":{"deviceSn":"DEMO-001","heartRate":72,"bloodOxygen":98,"temperature":36.6}}'

watch it arrive on the live dashboard: $url/dashboard

alert notifier: $notifier

redis: $redis

and see it stored:

  psql "$LJ_PG_DSN" -c 'SELECT device_sn, ts, heart_rate, blood_oxygen, temperature, upload_method FROM t_user_health_data ORDER BY create_time DESC LIMIT 5'

Ctrl-C stops the producer, the consumer, Redis and PostgreSQL.
MSG
wait -n "${pids[@]}" || true
echo "run: a process exited; see $LJ_RUN_DIR/log/" >&2

"""Shared plumbing of the operator tools in scripts/ (rollout, rollback,
consistency, scale, dlq): settings from the same LJ_* environment variables
as the binaries, connections, and one-line progress output.

    LJ_PRODUCER_URLS   producer base URLs, comma-separated (http://127.0.0.1:8080)
    LJ_ADMIN_TOKEN     bearer token for admin calls, when the producers have one
    LJ_PG_DSN, LJ_REDIS_HOST, LJ_REDIS_PORT, LJ_REDIS_PASSWORD, LJ_STREAM_PREFIX

The defaults are those of the local stack (`make run`, scripts/env.sh).
"""
import os
import sys
import time

import requests

STREAMS = {"health": "health_data_stream", "device": "device_info_stream",
           "event": "common_event_stream"}
GROUPS = {"health": "health_processors", "device": "device_processors",
          "event": "event_processors"}


def env(name, default):
    return os.environ.get(name, default)


def producer_urls():
    return [u.strip().rstrip("/") for u in
            env("LJ_PRODUCER_URLS", "http://127.0.0.1:8080").split(",") if u.strip()]


def prefix():
    return env("LJ_STREAM_PREFIX", "")


def stream(kind="health"):
    return prefix() + STREAMS[kind]


def group(kind="health"):
    return prefix() + GROUPS[kind]


def admin_headers():
    token = env("LJ_ADMIN_TOKEN", "")
    return {"Authorization": f"Bearer {token}"} if token else {}


def redis_client():
    import redis
    r = redis.Redis(host=env("LJ_REDIS_HOST", "127.0.0.1"), port=int(env("LJ_REDIS_PORT", "6390")),
                    password=env("LJ_REDIS_PASSWORD", "") or None, decode_responses=True)
    try:
        r.ping()
    except redis.exceptions.RedisError as e:
        fail("redis", f"cannot connect (LJ_REDIS_HOST/LJ_REDIS_PORT): {e}", 2)
    return r


def pg_connect():
    import psycopg
    dsn = env("LJ_PG_DSN", "host=127.0.0.1 port=5440 dbname=ljwx user=ljwx")
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as e:
        fail("postgresql", f"cannot connect (LJ_PG_DSN): {str(e).splitlines()[0]}", 2)


def confirm_zero(urls, timeout, tool):
    deadline = time.monotonic() + timeout
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        for url in list(pending):
            try:
                ratio = requests.get(url + "/api/stream_traffic_ratio", timeout=2).json()
                if ratio["current_ratio"] == 0:
                    say(tool, f"{url}: ratio 0")
                    pending.remove(url)
            except (requests.RequestException, ValueError, KeyError):
                pass
        time.sleep(0.1)
    return pending


def rollback(urls, timeout, tool="rollback"):
    """Calls the rollback on the first instance that answers; returns the
    instances that did not confirm ratio 0 within 'timeout'."""
    for url in urls:
        try:
            resp = requests.post(url + "/api/emergency_rollback", headers=admin_headers(),
                                 timeout=5)
        except requests.RequestException as e:
            say(tool, f"{url}: unreachable ({e.__class__.__name__})")
            continue
        if resp.status_code == 200:
            body = resp.json()
            say(tool, f"{url}: rolled back from {body.get('old_ratio')} at "
                          f"{body.get('rollback_time')}")
            return confirm_zero(urls, timeout, tool)
        say(tool, f"{url}: HTTP {resp.status_code} {resp.text.strip()[:200]}")
    return list(urls)


def say(tool, msg):
    print(f"{time.strftime('%H:%M:%S')} {tool}: {msg}", flush=True)


def fail(tool, msg, code=1):
    say(tool, "FAILED: " + msg)
    sys.exit(code)

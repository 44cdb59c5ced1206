"""Retention (issue 19, migration 008): health partitions older than
--retention-months are archived (--retention-archive-dir), detached, dropped
and audited by the consumer's upkeep; the default partition and the months
inside the window are kept; a failed archive drops nothing; two consumers
drop each partition once.

Each test gets a database of its own (a copy of a migrated template), since
a retention consumer drops every old partition it finds.
"""
import datetime
import hashlib
import os
import re
import subprocess
import uuid

import psycopg
import pytest
import requests
from conftest import BIN, IS_ROOT, TOP, Proc, free_port, wait_for

UTC = datetime.timezone.utc


# docs/operations.md, "Restoring an archive" written before migration 012.
OLD_ARCHIVE_COLUMNS = (
    "SELECT string_agg(quote_ident(column_name), ',' ORDER BY ordinal_position)"
    " FROM information_schema.columns WHERE table_schema = current_schema()"
    " AND table_name = 't_user_health_data' AND column_name <> 'stream_shard'")

def month(k):
    """First day of the UTC month k months before the current one."""
    today = datetime.datetime.now(UTC).date()
    m = today.year * 12 + today.month - 1 - k
    return datetime.date(m // 12, m % 12 + 1, 1)


def part(k):
    return "t_user_health_data_" + month(k).strftime("%Y%m")


@pytest.fixture(scope="module")
def template(servers):
    name = f"ljwx_ret_tpl_{uuid.uuid4().hex[:6]}"
    admin = f"host=127.0.0.1 port={servers.pg_port} dbname=postgres user=postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name} OWNER ljwx")
    subprocess.run([os.path.join(TOP, "scripts", "migrate.sh"), "--dsn",
                    f"host=127.0.0.1 port={servers.pg_port} dbname={name} user=ljwx"],
                   check=True, capture_output=True)
    yield name
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"DROP DATABASE {name} WITH (FORCE)")


class Db:
    def __init__(self, servers, template):
        self.name = f"ljwx_ret_{uuid.uuid4().hex[:8]}"
        self.admin = f"host=127.0.0.1 port={servers.pg_port} dbname=postgres user=postgres"
        with psycopg.connect(self.admin, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {self.name} TEMPLATE {template} OWNER ljwx")
        self.dsn = f"host=127.0.0.1 port={servers.pg_port} dbname={self.name} user=ljwx"

    def sql(self, query, params=None):
        with psycopg.connect(self.dsn, autocommit=True) as c:
            cur = c.execute(query, params)
            return cur.fetchall() if cur.description else None

    def partitions(self):
        return {r[0] for r in self.sql(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 't_user_health_data'::regclass")}

    def add_months(self, *ks, rows=3):
        """Partitions of months k back, 'rows' readings in each (a minute
        apart from the 2nd of the month)."""
        self.sql("SELECT ensure_health_months(%s::date[])", ([month(k) for k in ks],))
        with psycopg.connect(self.dsn, autocommit=True) as c:
            for k in ks:
                start = datetime.datetime.combine(month(k), datetime.time(), UTC)
                c.execute("INSERT INTO t_user_health_data (device_sn, ts, heart_rate,"
                          " upload_method) SELECT 'RET' || lpad(%s::text, 3, '0') || '-' || i,"
                          " %s + make_interval(days => 1, mins => i), 70, 'optimized'"
                          " FROM generate_series(0, %s - 1) i", (k, start, rows))

    def add_row(self, sn, ts):
        self.sql("INSERT INTO t_user_health_data (device_sn, ts, heart_rate, upload_method)"
                 " VALUES (%s, %s, 70, 'optimized')", (sn, ts))

    def audit(self):
        return self.sql("SELECT partition_name, row_count, keep_months, archive_file,"
                        " archive_sha256, archive_bytes FROM t_partition_retention_audit"
                        " ORDER BY range_from")

    def drop(self):
        with psycopg.connect(self.admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE {self.name} WITH (FORCE)")


@pytest.fixture
def db(servers, template):
    d = Db(servers, template)
    yield d
    d.drop()


def metrics(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.ConnectionError:
        return ""


def total(text, name):
    return sum(float(v) for v in re.findall(r"^%s\{[^}]*\} (\S+)$" % name, text, re.M))


def upkeep_done(port):
    """Every health worker ran its first upkeep: retention, then the months
    ahead (counted after retention)."""
    vals = re.findall(r'^ljwx_consumer_partitions_ahead\{[^}]*stream="[^"]*health_data_stream"\}'
                      r' (\S+)$', metrics(port), re.M)
    return bool(vals) and all(float(v) >= 0 for v in vals)


def start(stack, db, *args, **env):
    port = free_port()
    proc = stack.consumer("--partition-window-months", "1", *args, LJ_PG_DSN=db.dsn,
                          LJ_STATUS_PORT=port, LJ_DEVICE_WORKERS=0, LJ_EVENT_WORKERS=0, **env)
    wait_for(lambda: upkeep_done(port), timeout=20, what="the consumer's first upkeep")
    return proc, port


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_old_partitions_are_dropped_and_audited_newer_and_default_kept(stack, db):
    db.add_months(2, 3, 4, 30)
    old_in_default = datetime.datetime(2001, 5, 5, tzinfo=UTC)  # no partition: the default
    db.add_row("RETDEF-1", old_in_default)
    before = db.partitions()
    assert {part(2), part(3), part(4), part(30), "t_user_health_data_default"} <= before

    proc, port = start(stack, db, "--retention-months", "2")
    after = db.partitions()
    # 2 months back is the oldest month kept; the older ones went.
    assert after == before - {part(3), part(4), part(30)}
    assert part(2) in after and part(0) in after and "t_user_health_data_default" in after
    audit = db.audit()
    assert [(a[0], a[1], a[2], a[3]) for a in audit] == \
        [(part(30), 3, 2, None), (part(4), 3, 2, None), (part(3), 3, 2, None)]
    assert db.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn LIKE 'RET002-%'") \
        == [(3,)]
    # Rows of old months in the default partition stay (documented).
    assert db.sql("SELECT count(*) FROM t_user_health_data_default"
                  " WHERE device_sn = 'RETDEF-1'") == [(1,)]
    text = metrics(port)
    assert total(text, "ljwx_consumer_partitions_dropped_total") == 3
    assert total(text, "ljwx_consumer_retention_failures_total") == 0
    out = proc.output()
    assert f"dropped partition={part(30)} rows=3 keep_months=2 archive=none" in out


def test_retention_is_off_by_default(stack, db):
    db.add_months(3, 30)
    before = db.partitions()
    _, port = start(stack, db)
    assert db.partitions() == before
    assert db.audit() == []
    assert total(metrics(port), "ljwx_consumer_partitions_dropped_total") == 0


def test_archive_is_written_checksummed_and_restorable(stack, db, tmp_path):
    db.add_months(5, rows=4)
    db.sql("UPDATE t_user_health_data SET sleep = %s WHERE device_sn = 'RET005-0'",
           ("tab\there, newline\nand \\ backslash",))
    want = db.sql("SELECT * FROM t_user_health_data WHERE device_sn LIKE 'RET005-%'"
                  " ORDER BY device_sn")
    archive = tmp_path / "archive"
    archive.mkdir()
    start(stack, db, "--retention-months", "2", "--retention-archive-dir", str(archive))

    assert part(5) not in db.partitions()
    [(name, rows, keep, path, sha, size)] = db.audit()
    assert (name, rows, keep) == (part(5), 4, 2)
    assert os.path.dirname(path) == str(archive)
    assert re.fullmatch(re.escape(part(5)) + r"\.\d{8}T\d{6}Z\.copy", os.path.basename(path))
    assert sha256_of(path) == sha and os.path.getsize(path) == size
    with open(path + ".sha256") as f:
        assert f.read() == f"{sha}  {os.path.basename(path)}\n"
    assert subprocess.run(["sha256sum", "-c", os.path.basename(path) + ".sha256"],
                          cwd=archive, capture_output=True).returncode == 0
    assert sorted(os.listdir(archive)) == sorted([os.path.basename(path),
                                                  os.path.basename(path) + ".sha256"])
    with open(path) as f:
        assert len(f.read().splitlines()) == 4

    # Restore as docs/operations.md says: the month's partition, then \copy.
    db.sql("SELECT ensure_health_months(%s::date[])", ([month(5)],))
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", db.dsn, "-c",
                    f"\\copy t_user_health_data FROM '{path}'"], check=True)
    assert db.sql("SELECT * FROM t_user_health_data WHERE device_sn LIKE 'RET005-%'"
                  " ORDER BY device_sn") == want

    # An archive written before migration 012 has no stream_shard (the
    # last column): restored with the column list docs/operations.md gives.
    old = str(tmp_path / "before-012.copy")
    with open(path) as f, open(old, "w") as out:
        out.writelines(line.rsplit("\t", 1)[0] + "\n" for line in f)
    db.sql("DELETE FROM t_user_health_data WHERE device_sn LIKE 'RET005-%'")
    cols = subprocess.run(["psql", "-X", "-At", db.dsn, "-c", OLD_ARCHIVE_COLUMNS],
                          check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", db.dsn, "-c",
                    f"\\copy t_user_health_data ({cols}) FROM '{old}'"], check=True)
    assert db.sql("SELECT * FROM t_user_health_data WHERE device_sn LIKE 'RET005-%'"
                  " ORDER BY device_sn") == want


def test_unwritable_archive_dir_drops_nothing(stack, db, tmp_path):
    db.add_months(3, 4)
    before = db.partitions()
    if IS_ROOT:     # root writes through any mode bits: a folder that is a file
        (tmp_path / "file").write_text("x")
        archive = tmp_path / "file" / "archive"
    else:
        archive = tmp_path / "ro"
        archive.mkdir()
        archive.chmod(0o555)
    proc, port = start(stack, db, "--retention-months", "2", "--retention-archive-dir",
                       str(archive))
    assert db.partitions() == before
    assert db.audit() == []
    text = metrics(port)
    assert total(text, "ljwx_consumer_retention_failures_total") >= 1
    assert total(text, "ljwx_consumer_partitions_dropped_total") == 0
    out = proc.output()
    assert f"archive of {part(4)} to {archive} failed" in out
    assert "nothing dropped" in out
    if not IS_ROOT:
        assert os.listdir(archive) == []


def test_archive_cut_short_by_a_full_disk_drops_nothing(stack, db, tmp_path):
    """A write that fails halfway (the file size limit standing in for a full
    disk): the partial file is removed, the partition stays."""
    db.add_months(4, rows=3000)
    archive = tmp_path / "archive"
    archive.mkdir()
    port = free_port()
    env = stack.env(LJ_PG_DSN=db.dsn, LJ_STATUS_PORT=port, LJ_DEVICE_WORKERS=0,
                    LJ_EVENT_WORKERS=0, LJ_LOG_LEVEL="info")
    # ulimit -f is in 512-byte blocks: 100 KiB, a third of the archive. An
    # ignored SIGXFSZ stays ignored across exec: write() fails with EFBIG.
    argv = ["sh", "-c", "ulimit -f 200; trap '' XFSZ; exec \"$0\" \"$@\"",
            os.path.join(BIN, "ljwx-consumer"), "--partition-window-months", "1",
            "--retention-months", "2", "--retention-archive-dir", str(archive)]
    proc = Proc("ljwx-consumer", argv, env, str(tmp_path / "consumer-fsize.log"))
    stack.procs.append(proc)
    wait_for(lambda: upkeep_done(port), timeout=20, what="the consumer's first upkeep")
    assert part(4) in db.partitions()
    assert db.audit() == []
    assert os.listdir(archive) == []
    assert total(metrics(port), "ljwx_consumer_retention_failures_total") >= 1
    out = proc.output()
    assert "cannot write" in out and "File too large" in out
    assert f"archive of {part(4)} to {archive} failed" in out


@pytest.mark.parametrize("when", ["IMMEDIATE", "DEFERRED"])
def test_failed_drop_or_commit_removes_the_archive(stack, db, tmp_path, when):
    """The archive is written, then the drop's transaction fails (in the
    audit insert, or at COMMIT): nothing dropped, the archive removed."""
    db.add_months(3)
    db.sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
           " BEGIN RAISE EXCEPTION 'refused by test'; END $$")
    db.sql("CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON t_partition_retention_audit"
           f" DEFERRABLE INITIALLY {when} FOR EACH ROW EXECUTE FUNCTION refuse()")
    archive = tmp_path / "archive"
    archive.mkdir()
    proc, port = start(stack, db, "--retention-months", "2", "--retention-archive-dir",
                       str(archive))
    assert part(3) in db.partitions()
    assert db.sql("SELECT count(*) FROM t_user_health_data WHERE device_sn LIKE 'RET003-%'") \
        == [(3,)]
    assert db.sql("SELECT count(*) FROM t_partition_retention_audit") == [(0,)]
    assert os.listdir(archive) == []
    assert total(metrics(port), "ljwx_consumer_retention_failures_total") >= 1
    if when == "DEFERRED":
        assert f"commit of the drop of {part(3)} failed: nothing dropped" in proc.output()


def test_two_consumers_drop_each_partition_once(stack, db, tmp_path):
    ks = [3, 4, 5, 6, 7, 8]
    db.add_months(*ks, rows=1)
    archive = tmp_path / "archive"
    archive.mkdir()
    procs = []
    ports = []
    for _ in range(2):
        port = free_port()
        procs.append(stack.consumer("--partition-window-months", "1", "--workers", "2",
                                    "--retention-months", "2", "--retention-archive-dir",
                                    str(archive), LJ_PG_DSN=db.dsn, LJ_STATUS_PORT=port,
                                    LJ_DEVICE_WORKERS=0, LJ_EVENT_WORKERS=0))
        ports.append(port)
    for port in ports:
        wait_for(lambda: upkeep_done(port), timeout=20, what="the first upkeeps")
    # A worker that found the lock taken stops for the hour: at least one
    # run got them all (at most RETENTION_MAX_RUN = 12 per run).
    audit = db.audit()
    assert sorted(a[0] for a in audit) == sorted(part(k) for k in ks)
    assert len({a[3] for a in audit}) == len(ks)
    assert sum(total(metrics(p), "ljwx_consumer_partitions_dropped_total") for p in ports) \
        == len(ks)
    assert sum(total(metrics(p), "ljwx_consumer_retention_failures_total") for p in ports) == 0
    for p in procs:
        assert "retention" not in "".join(
            line for line in p.output().splitlines(True) if " ERROR " in line)
    assert len(os.listdir(archive)) == 2 * len(ks)


def test_drop_function_refuses_what_is_not_due(db):
    db.add_months(1, 3)
    refused = [
        ("t_user_health_data_default", 2),      # never the default partition
        (part(1), 2),                           # inside the retention
        (part(0), 1),                           # the current month, whatever keep says
        (part(3), 0),                           # keep_months below the floor
        ("sys_user", 2),                        # not a partition at all
        (part(3) + "; DROP TABLE sys_user", 2),
    ]
    for name, keep in refused:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            db.sql("SELECT drop_health_partition(%s, %s)", (name, keep))
    # An archive description must be whole and look like one.
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.sql("SELECT drop_health_partition(%s, 2, 3, '/a', NULL, 10)", (part(3),))
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.sql("SELECT drop_health_partition(%s, 2, 3, '/a', 'not-a-digest', 10)", (part(3),))
    # A row count that differs from the archive's: nothing dropped.
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        db.sql("SELECT drop_health_partition(%s, 2, 99, '/a', %s, 10)", (part(3), "0" * 64))
    assert {part(1), part(3), "t_user_health_data_default"} <= db.partitions()
    assert db.audit() == []
    assert db.sql("SELECT drop_health_partition(%s, 2)", (part(3),)) == [(3,)]
    assert part(3) not in db.partitions()


@pytest.mark.parametrize("as_of, keep, oldest_kept", [
    ("2027-01-15 12:00:00+00", 1, "2026-12"),       # across the new year
    ("2027-01-01 00:00:00+00", 1, "2026-12"),       # the first instant of a month
    ("2026-12-31 23:59:59+00", 1, "2026-11"),       # the last one
    ("2027-01-01 07:00:00+08", 1, "2026-11"),       # still 2026-12 in UTC
    ("2027-03-31 10:00:00+00", 13, "2026-02"),      # more than a year
    ("2027-02-28 10:00:00+00", 2, "2026-12"),
])
def test_cutoff_month(db, as_of, keep, oldest_kept):
    """The oldest month kept is the UTC month 'keep' before the month of
    'as_of'; every older monthly partition (and only those) is a candidate."""
    months = [datetime.date(2025, 12, 1) + datetime.timedelta(days=31 * i) for i in range(18)]
    db.sql("SELECT ensure_health_months(%s::date[])", (months,))
    got = [r[0][-6:] for r in db.sql(
        "SELECT part FROM health_retention_candidates(%s, %s)", (keep, as_of))]
    first_kept = oldest_kept.replace("-", "")
    have = sorted(p[-6:] for p in db.partitions() if p[-6:].isdigit())
    assert got == [m for m in have if m < first_kept]
    assert got and got[-1] < first_kept
    assert first_kept in have

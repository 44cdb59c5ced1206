"""A real PostgreSQL primary with a streaming standby on loopback, for the
failover tests: the primary is made as the session's server is (initdb,
the role, the migrations), the standby with `pg_basebackup -R` from it, on
its own port and in its own folder. The primary waits for the standby's
flush at every commit (synchronous_standby_names = '*'), as a fleet that
answers 200 only for what survives a failover must run (docs/operations.md,
Failover). stop_primary() and promote() are what patroni or repmgr automate: the
primary dies at once (`pg_ctl stop -m immediate`), the standby is promoted.
'tmp' must be a folder the postgres user may enter (tempfile.mkdtemp(),
not pytest's tmp_path, when running as root)."""
import os
import shutil
import subprocess

import psycopg

from conftest import IS_ROOT, PG_BIN, Servers, as_pg, wait_for


class PgPair:
    def __init__(self, tmp):
        self.tmp = tmp
        self.primary = Servers(os.path.join(tmp, "primary"))
        self.standby = Servers(os.path.join(tmp, "standby"))
        for s in (self.primary, self.standby):
            os.makedirs(s.tmp, exist_ok=True)

    def dsn(self, target="read-write"):
        """Both hosts, libpq's own multi-host form: the first that is
        read-write wins."""
        return (f"host=127.0.0.1,127.0.0.1 port={self.primary.pg_port},{self.standby.pg_port}"
                f" dbname=ljwx user=ljwx target_session_attrs={target}")

    def start(self):
        if IS_ROOT:
            for d in (self.tmp, self.primary.tmp, self.standby.tmp):
                shutil.chown(d, "postgres")
        self.primary.start_pg()
        self.primary.create_db()
        self.primary.migrate()
        data = os.path.join(self.standby.pg_dir, "data")
        os.makedirs(self.standby.pg_dir, exist_ok=True)
        if IS_ROOT:
            shutil.chown(self.standby.pg_dir, "postgres")
        subprocess.run(as_pg([f"{PG_BIN}/pg_basebackup", "-h", "127.0.0.1", "-p",
                              str(self.primary.pg_port), "-U", "postgres", "-D", data, "-R",
                              "-X", "stream", "-c", "fast"]),
                       check=True, stdout=subprocess.DEVNULL, timeout=60)
        self.standby.start_pg()
        # Synchronous from now on (before, the primary's own set-up would
        # wait for a standby that does not exist yet).
        self._admin(self.primary, "ALTER SYSTEM SET synchronous_standby_names = '*'")
        self._admin(self.primary, "SELECT pg_reload_conf()")
        wait_for(self.streaming, timeout=20, what="the standby to stream synchronously")

    @staticmethod
    def _admin(server, sql):
        with psycopg.connect(f"host=127.0.0.1 port={server.pg_port} dbname=postgres"
                             " user=postgres", autocommit=True, connect_timeout=5) as c:
            cur = c.execute(sql)
            return cur.fetchall() if cur.description else None

    def streaming(self):
        return self._admin(self.primary, "SELECT count(*) FROM pg_stat_replication"
                           " WHERE state = 'streaming' AND sync_state = 'sync'")[0][0] == 1

    def stop_primary(self):
        """The primary dies: no shutdown checkpoint, every connection cut."""
        pdata = os.path.join(self.primary.pg_dir, "data")
        subprocess.run(as_pg([f"{PG_BIN}/pg_ctl", "-D", pdata, "-m", "immediate", "-w", "-s",
                              "stop"]), check=True, timeout=30)

    def fence_primary(self):
        """The primary stays up but read-only, its connections open (a
        demoted or fenced old primary): every write on them fails with
        SQLSTATE 25006."""
        self._admin(self.primary, "ALTER SYSTEM SET default_transaction_read_only = on")
        self._admin(self.primary, "SELECT pg_reload_conf()")

    def promote(self):
        """The standby becomes the read-write primary."""
        sdata = os.path.join(self.standby.pg_dir, "data")
        subprocess.run(as_pg([f"{PG_BIN}/pg_ctl", "-D", sdata, "-w", "-s", "promote"]),
                       check=True, timeout=30)
        wait_for(lambda: self.standby.sql("SELECT pg_is_in_recovery()")[0][0] is False,
                 what="the standby to be promoted")

    def stop(self):
        self.primary.stop_pg()
        self.standby.stop_pg()

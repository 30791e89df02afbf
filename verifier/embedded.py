"""An embedded PostgreSQL 16 (the binaries of the ``pgserver`` wheel) for when DATABASE_URL is
not set: ``make demo``, a laptop. The data lives in ``<X402_EMBEDDED_DIR>/pgdata``; the server
stops when the last process that opened it exits, and the data stays for the next run.

Private to its owner. pgserver's own bootstrap is not used: run as root it widened every parent
directory to 0755, put the socket of a long path in a world-writable (0777) directory, and let
any local user in as superuser (``trust``). Here:

- the server runs as the user who starts it (as root: the system user ``pgserver``, since
  PostgreSQL refuses root), no TCP listener, its data directory mode 0700;
- its socket is in the data directory, or when that path is too long for a Unix socket, in a
  new private (0700) directory under /tmp;
- ``pg_hba.conf`` allows only that socket with ``peer`` authentication, and ``pg_ident.conf``
  maps only the server's user (and root) to the database superuser. Both are rewritten at every
  start, so a data directory made by an older version (``trust``) is closed too;
- no mode of any existing directory is ever changed. As root, when ``pgserver`` cannot reach
  X402_EMBEDDED_DIR (a parent closed to others, such as /root), start refuses and says why.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from verifier.errors import ConfigError, DatabaseError

SUPERUSER = "postgres"
ROOT_SERVER_USER = "pgserver"  # the user pgserver itself runs the server as under root
SOCKET_NAME = ".s.PGSQL.5432"
SUN_PATH_MAX = 107  # bytes of a Unix socket path, without the final NUL
START_TIMEOUT = 60

_MISSING = (
    "DATABASE_URL: not set, and the embedded PostgreSQL is not installed "
    "(pip install 'x402-verifier[embedded]', or set DATABASE_URL)"
)
_HBA = """\
# Written by x402-verifier at every start of the embedded server (edits are lost).
# Unix socket only (no TCP listener), OS users mapped to the superuser by pg_ident.conf.
local all all peer map=x402
"""


def start(embedded_dir: Path, database: str = "x402") -> str:
    """Starts (or joins) the embedded server and returns a URL for ``database``, created if new."""
    server = _open(embedded_dir)
    _ensure_database(server.url(SUPERUSER), database)
    return server.url(database)


def stop(embedded_dir: Path) -> None:
    """This process lets the server go (as at exit): it stops if no other process has it."""
    server = _SERVERS.pop(_key(embedded_dir), None)
    if server is not None:
        server.release()


def bin_dir() -> Path:
    """Client programs (psql, pg_dump) matching the embedded server's major version."""
    with warnings.catch_warnings():
        # Importing pgserver asks platformdirs for XDG_RUNTIME_DIR, unset under systemd and CI.
        warnings.simplefilter("ignore")
        try:
            from pgserver._commands import POSTGRES_BIN_PATH
        except ImportError as exc:
            raise ConfigError(_MISSING) from exc
    return Path(POSTGRES_BIN_PATH)


@dataclass(frozen=True)
class _User:
    name: str
    uid: int
    gid: int


@dataclass
class _Server:
    root: Path  # X402_EMBEDDED_DIR, absolute
    user: _User  # who runs the server
    socket_dir: Path = field(default=Path())
    released: bool = False

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}"

    # -- start --------------------------------------------------------------------------------

    def open(self) -> None:
        with self._locked():
            self._prepare()
            running = _postmaster(self.pgdata)
            if running is not None and not self._private(running):
                # Started by an older version (socket in a shared directory): restart it here.
                self._pg_ctl(["-w", "-m", "fast", "stop"])
                running = None
            if running is None:
                self.socket_dir = self._new_socket_dir()
                self._start()
            else:
                self.socket_dir = running
                self._pg_ctl(["reload"])  # pg_hba.conf / pg_ident.conf as just written
            self._clients(add=os.getpid())

    def _prepare(self) -> None:
        if self.user.uid != os.geteuid():
            self._check_reachable()
        if not self.pgdata.exists():
            self.pgdata.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(self.pgdata, self.user.uid, self.user.gid)
        self.pgdata.chmod(0o700)  # ours, not a parent; PostgreSQL wants 0700 or 0750 anyway
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(bin_dir() / "initdb", ["-D", str(self.pgdata), "-U", SUPERUSER,
                                             "--auth-local=peer", "--auth-host=reject",
                                             "--encoding=utf8"], what="initdb")
        self._write("pg_hba.conf", _HBA)
        users = sorted({self.user.name, _current_user().name})
        self._write("pg_ident.conf", "# Written by x402-verifier at every start.\n"
                    + "".join(f"x402 {u} {SUPERUSER}\n" for u in users))

    def _check_reachable(self) -> None:
        """As root the server runs as another user: it must reach the data directory and the
        binaries as things stand. Permissions are never widened to make it so."""
        for path in (self.root, bin_dir()):
            probe = self._run("/usr/bin/test", ["-x", str(path)], what="probe", check=False)
            if probe.returncode != 0:
                raise ConfigError(
                    f"X402_EMBEDDED_DIR: the embedded PostgreSQL runs as the system user "
                    f"{self.user.name!r} when started by root, and that user cannot reach "
                    f"{path} (a directory on the way is closed to other users). Choose an "
                    "X402_EMBEDDED_DIR it can reach (such as /var/lib/x402-verifier), run as "
                    "another user, or set DATABASE_URL; directory modes are never changed.")

    def _write(self, name: str, text: str) -> None:
        path = self.pgdata / name
        tmp = path.with_name(name + ".x402-new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        if os.geteuid() == 0:
            os.chown(tmp, self.user.uid, self.user.gid)
        tmp.replace(path)

    def _private(self, socket_dir: Path) -> bool:
        if socket_dir == self.pgdata:
            return True
        try:
            st = socket_dir.lstat()
        except OSError:
            return False
        return st.st_uid == self.user.uid and st.st_mode & 0o7077 == 0 and socket_dir.is_dir()

    def _new_socket_dir(self) -> Path:
        if len(os.fsencode(str(self.pgdata / SOCKET_NAME))) <= SUN_PATH_MAX:
            return self.pgdata
        made = Path(tempfile.mkdtemp(prefix="x402-pg-", dir="/tmp"))  # 0700, ours
        if os.geteuid() == 0:
            os.chown(made, self.user.uid, self.user.gid)
        return made

    def _start(self) -> None:
        options = f"-h '' -k {self.socket_dir} -c unix_socket_permissions=0700"
        try:
            self._pg_ctl(["-w", "-t", str(START_TIMEOUT), "-l", str(self.pgdata / "log"),
                          "-o", options, "start"])
        except DatabaseError as exc:
            log = self.pgdata / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise DatabaseError(f"{exc}\n{tail}") from exc

    # -- stop ---------------------------------------------------------------------------------

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        with contextlib.suppress(OSError, DatabaseError), self._locked():
            if self._clients(remove=os.getpid()):
                return  # another process still has it
            if _postmaster(self.pgdata) is not None:
                self._pg_ctl(["-w", "-m", "fast", "stop"])
            if self.socket_dir != self.pgdata and self.socket_dir.name.startswith("x402-pg-"):
                shutil.rmtree(self.socket_dir, ignore_errors=True)

    # -- helpers ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root / ".pgdata.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _clients(self, *, add: int | None = None, remove: int | None = None) -> list[int]:
        """The processes that have the server open (the dead left out), after the change."""
        path = self.root / ".pgdata.clients"
        try:
            pids = [int(p) for p in json.loads(path.read_text())]
        except (OSError, ValueError, TypeError):
            pids = []
        pids = [p for p in pids if p != remove and _alive(p)]
        if add is not None and add not in pids:
            pids.append(add)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(pids))
        return pids

    def _pg_ctl(self, args: list[str]) -> None:
        self._run(bin_dir() / "pg_ctl", ["-D", str(self.pgdata), *args], what="pg_ctl")

    def _run(self, program: Path | str, args: list[str], *, what: str,
             check: bool = True) -> subprocess.CompletedProcess[bytes]:
        as_other = self.user.uid != os.geteuid()
        with tempfile.TemporaryFile() as err:  # a file, not a pipe: the postmaster inherits it
            done = subprocess.run(
                [str(program), *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=err, cwd=self.pgdata if self.pgdata.exists() else self.root,
                user=self.user.uid if as_other else None,
                group=self.user.gid if as_other else None,
                extra_groups=[] if as_other else None, timeout=START_TIMEOUT + 30, check=False)
            err.seek(0)
            message = err.read().decode(errors="replace").strip()
        if check and done.returncode != 0:
            raise DatabaseError(f"embedded PostgreSQL: {what} failed: {message}")
        return done


_SERVERS: dict[Path, _Server] = {}


def _key(embedded_dir: Path) -> Path:
    return embedded_dir.expanduser().absolute()


def _open(embedded_dir: Path) -> _Server:
    key = _key(embedded_dir)
    if key in _SERVERS:
        return _SERVERS[key]
    bin_dir()  # the wheel is there, or a clear ConfigError
    if not key.exists():
        key.mkdir(parents=True)
        key.chmod(0o711 if os.geteuid() == 0 else 0o700)  # made here: the server user passes
    server = _Server(key, _server_user())
    server.open()
    _SERVERS[key] = server
    atexit.register(server.release)
    return server


def _server_user() -> _User:
    if os.geteuid() != 0:
        return _current_user()
    try:
        entry = pwd.getpwnam(ROOT_SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", ROOT_SERVER_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(ROOT_SERVER_USER)
    return _User(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _current_user() -> _User:
    entry = pwd.getpwuid(os.geteuid())
    return _User(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _postmaster(pgdata: Path) -> Path | None:
    """The socket directory of the server running on ``pgdata``; None when none runs."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    if not _alive(pid) or len(lines) < 5 or not lines[4].strip():
        return None
    return Path(lines[4].strip())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ensure_database(admin_url: str, database: str) -> None:
    from verifier.store import admin

    admin.ensure_database(admin_url, database)

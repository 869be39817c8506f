"""A Debian bookworm machine under a real systemd (systemd-nspawn), for the end-to-end
test of chatd's units (tests/ops/test_systemd_nspawn.py, issue 18).

- `rootfs()`: `debootstrap --variant=minbase bookworm` with `PACKAGES`, cached outside
  the clone in /var/cache/chatd-tests (CHATD_TEST_CACHE), keyed by a hash of the list,
  so a machine pays the ~50 s once; built under a lock, moved into place when complete.
- `wheelhouse()`: chatd's dependencies and build tools as wheels (pip in the container
  cannot reach an index), cached the same way, keyed by pyproject.toml's requirements.
- `Machine.boot()`: `systemd-nspawn -b` on the cached tree with `--volatile=overlay`
  (writes go to a tmpfs, the cache stays clean) and `--private-network` (its own
  loopback, so the shipped ports cannot clash with anything on the host). Commands run
  inside with `nsenter -t <its PID 1> -a`; clients run on the host in its network
  namespace (`nsenter -n`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
SUITE_PYTHON = "3.11"  # bookworm's python3, which the wheels must fit
#: What the rootfs holds beyond minbase: systemd as init, and exactly what
#: docs/operations.md's `apt-get install` line asks for (the test runs that line
#: offline, so a package added there must be added here too).
PACKAGES = ("systemd", "systemd-sysv", "python3", "python3-venv")
CACHE = Path(os.environ.get("CHATD_TEST_CACHE", "/var/cache/chatd-tests"))
#: The environment of commands in the machine: the host's must not leak in (.venv, PYTHON*).
MACHINE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}
TOOLS = ("debootstrap", "systemd-nspawn", "nsenter")


def why_not() -> str | None:
    """Why a machine cannot be booted here, or None."""
    if sys.platform != "linux":
        return "systemd-nspawn needs Linux"
    if os.geteuid() != 0:
        return "systemd-nspawn and debootstrap need root (CI runs the tests as root)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)} (see scripts/apt-packages.txt)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs (--volatile=overlay)"
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def rootfs(log: Path) -> Path:
    """The cached minbase tree, built now if missing (debootstrap's output in `log`)."""
    target = CACHE / f"rootfs-{SUITE}-{_key(SUITE, 'minbase', *PACKAGES)}"
    with _locked(CACHE / "rootfs.lock"):
        if (target / ".complete").exists():
            return target
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        _logged(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(partial),
            ],
            log,
            timeout=900,
        )
        (partial / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target


def requirements() -> list[str]:
    """What installing chatd from source fetches: its dependencies, its build backend,
    and pip itself (docs/operations.md upgrades pip first)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [*meta["project"]["dependencies"], *meta["build-system"]["requires"], "pip"]


def wheelhouse(log: Path) -> Path:
    """Wheels of `requirements()` and what they depend on, for the machine's Python (not
    the host's), cached by that list."""
    reqs = requirements()
    target = CACHE / f"wheels-{SUITE}-{_key(SUITE_PYTHON, platform.machine(), *reqs)}"
    with _locked(CACHE / "wheels.lock"):
        if (target / ".complete").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        abi = "cp" + SUITE_PYTHON.replace(".", "")
        _logged(
            [
                *(sys.executable, "-m", "pip", "download", "-q", "-d", str(target)),
                *("--only-binary=:all:", "--python-version", SUITE_PYTHON),
                *("--implementation", "cp", "--abi", abi),
                *("--platform", f"manylinux2014_{platform.machine()}"),
                *reqs,
            ],
            log,
            timeout=600,
        )
        (target / ".complete").touch()
    return target


def _logged(argv: list[str], log: Path, timeout: float) -> None:
    """Runs a slow set-up command with its output in `log`, quoted if it fails."""
    with open(log, "w") as out:
        done = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{argv[0]} exited {done.returncode} (log {log}):\n{tail}")


def source_files() -> list[str]:
    """The checkout as `git clone` would give it, plus files not yet committed."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p and (ROOT / p).is_file()]


def copy_checkout(dest: Path) -> None:
    for rel in source_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)


@dataclass
class Machine:
    """A booted container; `pid` is its systemd (PID 1 inside)."""

    proc: subprocess.Popen[bytes]
    pid: int
    console: Path

    @classmethod
    def boot(cls, tree: Path, console: Path, binds: Sequence[tuple[Path, str]] = ()) -> Machine:
        args = [
            "systemd-nspawn",
            "-q",
            "--register=no",
            "--keep-unit",
            "--volatile=overlay",
            "--private-network",
            "--console=pipe",
            *(f"--bind-ro={src}:{dst}" for src, dst in binds),
            "-D",
            str(tree),
            "-b",
        ]
        out = open(console, "wb")  # noqa: SIM115 (the container writes it until it stops)
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        out.close()
        deadline = time.monotonic() + 30
        pid = 0
        while not pid:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"nspawn did not start: {console.read_text()[-2000:]}")
            pid = _init_of(proc.pid)
            time.sleep(0.05)
        machine = cls(proc, pid, console)
        # Wait for the boot to settle (no job queued), as a login prompt would; "offline"
        # while systemd has not yet opened its socket.
        while True:
            state = machine.run("systemctl is-system-running --wait", check=False, timeout=60)
            if state.stdout.strip() in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                machine.stop()
                raise RuntimeError(f"boot: {state.stdout} {console.read_text()[-2000:]}")
            time.sleep(0.05)
        return machine

    @property
    def root(self) -> Path:
        """The machine's file system as seen from the host."""
        return Path(f"/proc/{self.pid}/root")

    def run(
        self,
        command: str,
        *,
        check: bool = True,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`sh -c command` inside, as root; stdout and stderr captured."""
        argv = ["nsenter", "-t", str(self.pid), "-a", "env", "-i"]
        argv += [f"{k}={v}" for k, v in {**MACHINE_ENV, **(env or {})}.items()]
        argv += ["sh", "-c", command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{command!r} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """`systemctl show` properties of a unit."""
        out = self.run(f"systemctl show {unit} -p {','.join(props)}").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(self, unit: str, timeout: float = 20, **want: str) -> dict[str, str]:
        """Polls `systemctl show` until every property has its wanted value."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.show(unit, *want)
            if all(got.get(k) == v for k, v in want.items()):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{unit}: wanted {want}, got {got}")
            time.sleep(0.1)

    def journal(self, args: str) -> str:
        return self.run(f"journalctl --no-pager -q {args}").stdout

    def wait_journal(self, args: str, pattern: str, timeout: float = 20) -> str:
        """Polls `journalctl args` until a line matches `pattern`; returns that line."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.journal(args).splitlines():
                if re.search(pattern, line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in journalctl {args}")
            time.sleep(0.1)

    def talk(
        self,
        port: int,
        send: bytes,
        until: bytes,
        *,
        cafile: Path | None = None,
        server_hostname: str = "chat.example.org",
        timeout: float = 10,
    ) -> bytes:
        """Connects to 127.0.0.1:`port` inside the machine (host Python in its network
        namespace), sends `send`, and returns what came back once `until` (a regex) matched
        it or the server closed. TLS when `cafile` is given."""
        argv = [
            "nsenter",
            "-t",
            str(self.pid),
            "-n",
            sys.executable,
            "-c",
            _CLIENT,
            str(port),
            send.hex(),
            until.hex(),
            str(cafile or ""),
            server_hostname,
            str(timeout),
        ]
        done = subprocess.run(argv, capture_output=True, timeout=timeout + 10, check=False)
        if done.returncode != 0:
            raise AssertionError(f"client to port {port}: {done.stderr.decode()}")
        return bytes.fromhex(done.stdout.decode().strip() or "")

    def stop(self) -> None:
        """Powers the machine off (SIGTERM to nspawn), killing it if that hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)  # the namespace's init: all go
                self.proc.kill()
                self.proc.wait(10)


def _init_of(pid: int) -> int:
    """The container's init once it runs systemd: nspawn's child, or that child's child
    (nspawn forks an intermediate process first)."""
    for candidate in _children(pid):
        for p in (candidate, *_children(candidate)):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{p}/comm").read_text().strip() == "systemd":
                    return p
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def doc_blocks(markdown: str, heading: str) -> list[list[str]]:
    """The ```sh blocks under `heading` (up to the next heading), each as its commands:
    continuation lines joined, comments and blank lines dropped."""
    lines = markdown.splitlines()
    blocks: list[list[str]] = []
    fence = ""  # the info string of the open fence ("sh", "toml", ...), or ""
    in_fence = False
    pending = ""
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("```"):
            in_fence, fence = not in_fence, line[3:].strip()
            if in_fence and fence == "sh":
                blocks.append([])
            continue
        if not in_fence:
            if re.match(r"#+ ", line):
                break
            continue
        if fence != "sh":
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = _strip_comment(pending + line).strip()
        pending = ""
        if text:
            blocks[-1].append(re.sub(r"\s+", " ", text))
    return blocks


def _strip_comment(line: str) -> str:
    """`cmd   # note` -> `cmd`: a `#` after whitespace and outside quotes starts a comment."""
    for m in re.finditer(r"\s#", line):
        before = line[: m.start()]
        if before.count("'") % 2 == 0 and before.count('"') % 2 == 0:
            return before
    return line


# The client, run by the host's Python inside the machine's network namespace.
_CLIENT = r"""
import re, socket, ssl, sys, time
port, send, until, cafile, name, timeout = sys.argv[1:]
send, until, timeout = bytes.fromhex(send), re.compile(bytes.fromhex(until)), float(timeout)
sock = socket.create_connection(("127.0.0.1", int(port)), timeout=timeout)
if cafile:
    ctx = ssl.create_default_context(cafile=cafile)
    sock = ctx.wrap_socket(sock, server_hostname=name)
sock.sendall(send)
got = b""
deadline = time.monotonic() + timeout
while not until.search(got) and time.monotonic() < deadline:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        data = sock.recv(65536)
    except (TimeoutError, socket.timeout):
        break
    if not data:
        break
    got += data
print(got.hex())
"""

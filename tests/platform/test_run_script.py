"""`make run` (scripts/run.sh) stops what it started, its Redis included, however it is stopped, and nothing
else. The script runs for real with a real Redis; Python and honcho are stand-ins, so each case takes a second."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")

# honcho's stand-in: records its id, then stays, like the web, tile and worker processes would.
FAKE_HONCHO = '#!/bin/sh\necho $$ > "$VAR_DIR/run/honcho.pid"\nexec sleep 300\n'


def _checkout(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "run.sh", root / "scripts" / "run.sh")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("#!/bin/sh\nexit 0\n")  # start-up check, migrate, collectstatic, seed_demo
    (bin_dir / "honcho").write_text(FAKE_HONCHO)
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "CACHE_URL", "HOST")}
    env.update(VAR_DIR=str(tmp_path / "var"), PORT="18590")
    return root, env


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is left


def _redis_on(socket: Path) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(socket).encode() in cmdline.read_bytes() and b"redis-server" in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [pid for pid in found if _alive(pid)]


def _start(root: Path, env: dict[str, str]) -> subprocess.Popen:
    # Its own session, as a terminal's foreground job is: a signal to the group reaches the script and its children.
    # A terminal's SIGHUP is not ignored: pytest started under `nohup` would pass that on, and bash cannot trap a
    # signal ignored when it starts.
    return subprocess.Popen(
        ["bash", "scripts/run.sh"], cwd=root, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )  # fmt: skip


def _wait_started(tmp_path: Path, run: subprocess.Popen) -> tuple[int, int]:
    honcho_pid = tmp_path / "var" / "run" / "honcho.pid"
    deadline = time.monotonic() + 20
    while not (honcho_pid.is_file() and honcho_pid.read_text().strip()):
        assert run.poll() is None, run.stdout.read().decode()
        assert time.monotonic() < deadline, "run.sh did not start"
        time.sleep(0.05)
    redis = _redis_on(tmp_path / "var" / "run" / "redis.sock")
    assert len(redis) == 1, redis
    return redis[0], int(honcho_pid.read_text())


def _kill_leftovers(tmp_path: Path, run: subprocess.Popen, pids: list[int]) -> None:
    """Whatever a failed case left running (its Redis, honcho, the script's group), so no case leaks into the next."""
    for pid in {*pids, *_redis_on(tmp_path / "var" / "run" / "redis.sock")}:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGKILL)


@pytest.mark.parametrize(
    "how,sig",
    [("ctrl-c", signal.SIGINT), ("kill", signal.SIGTERM), ("terminal closed", signal.SIGHUP)],
)
def test_stopping_run_stops_its_redis_and_processes_and_nothing_else(tmp_path, how, sig):
    root, env = _checkout(tmp_path)
    bystander = subprocess.Popen(["sleep", "300"])  # not started by run.sh: must survive
    run = _start(root, env)
    pids: list[int] = []
    try:
        pids = list(_wait_started(tmp_path, run))
        if how == "kill":
            os.kill(run.pid, sig)  # the script alone, as `kill <pid>` or a process manager does
        else:
            os.killpg(run.pid, sig)
        run.wait(timeout=60)  # the script waits up to 10 s for each of its two children
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in pids if _alive(pid)], f"left running after {how}: {pids}"
        assert bystander.poll() is None
        assert not (tmp_path / "var" / "run" / "redis.sock").exists()
    finally:
        _kill_leftovers(tmp_path, run, pids)
        bystander.kill()
        bystander.wait()


def test_a_second_run_on_the_same_var_dir_is_refused_and_leaves_the_first_alone(tmp_path):
    root, env = _checkout(tmp_path)
    first = _start(root, env)
    pids: list[int] = []
    try:
        pids = list(_wait_started(tmp_path, first))
        command = ["bash", "scripts/run.sh"]
        second = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1 and "another `make run`" in second.stderr
        assert all(_alive(pid) for pid in pids)
        os.killpg(first.pid, signal.SIGINT)
        first.wait(timeout=60)
    finally:
        _kill_leftovers(tmp_path, first, pids)

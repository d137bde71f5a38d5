"""Cell claims: one live holder at a time, stale claims taken over, released when done."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from jaxtl.learning_curve.claims import CLAIM_FILE, STALE_S, Claim, holder


def write_claim(cell_dir, host, pid, age_s=0.0):
    cell_dir.mkdir(parents=True, exist_ok=True)
    path = cell_dir / CLAIM_FILE
    path.write_text(json.dumps({"host": host, "pid": pid, "since": "then"}))
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))
    return path


def test_one_holder_until_released(tmp_path):
    cell = tmp_path / "0.1_f5_s0"
    with Claim.take(cell) as claim:
        assert claim is not None
        assert holder(cell)["pid"] == os.getpid()
        assert Claim.take(cell) is None  # held by a live process (this one)
    assert not (cell / CLAIM_FILE).exists()
    assert holder(cell) is None
    again = Claim.take(cell)
    assert again is not None
    again.release()


def race(cell, n=8):
    """The claims won by `n` threads taking `cell` at once."""
    won, start = [], threading.Barrier(n)

    def take():
        start.wait()
        claim = Claim.take(cell)
        if claim is not None:
            won.append(claim)

    threads = [threading.Thread(target=take) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


@pytest.mark.parametrize("stale", [False, True])
def test_only_one_of_many_racing_takers_wins(tmp_path, stale):
    cell = tmp_path / "cell"
    if stale:  # all of them find the same dead claim
        write_claim(cell, "elsewhere", 1, age_s=STALE_S + 60)
    won = race(cell)
    assert len(won) == 1 and holder(cell)["pid"] == os.getpid()
    won[0].release()
    assert sorted(p.name for p in cell.iterdir()) == []


def test_a_dead_process_claim_on_this_host_is_taken_over(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    cell = tmp_path / "cell"
    write_claim(cell, socket.gethostname(), gone.pid)
    assert holder(cell) is None
    with Claim.take(cell) as claim:
        assert claim is not None and holder(cell)["pid"] == os.getpid()
    assert sorted(p.name for p in cell.iterdir()) == []  # no stale file left behind


def test_a_live_process_claim_holds(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cell = tmp_path / "cell"
        write_claim(cell, socket.gethostname(), sleeper.pid, age_s=STALE_S + 60)  # e.g. stopped a while
        assert holder(cell)["pid"] == sleeper.pid
        assert Claim.take(cell) is None
    finally:
        sleeper.kill()
        sleeper.wait()
    assert Claim.take(cell) is not None


def test_another_hosts_claim_is_stale_only_when_untouched(tmp_path):
    fresh, old = tmp_path / "fresh", tmp_path / "old"
    write_claim(fresh, "elsewhere", 1)
    write_claim(old, "elsewhere", 1, age_s=STALE_S + 60)
    assert holder(fresh)["host"] == "elsewhere" and Claim.take(fresh) is None
    assert holder(old) is None
    claim = Claim.take(old)
    assert claim is not None and holder(old)["host"] == socket.gethostname()
    claim.release()

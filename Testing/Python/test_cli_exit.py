"""The ``segmentai`` command's exit (``cli/fast_exit.py``): everything a normal exit does but the
module teardown — threads joined, ``atexit`` handlers run, output flushed, the exit code kept."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np

from segmentai_core.io import read_labelmap, write_volume
from segmentai_core.phantoms import blob_phantom


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=120)


def test_refine_as_a_process_writes_everything_and_keeps_its_exit_code(tmp_path):
    image, truth = blob_phantom(shape=(20, 32, 28), spacing=(1.0, 1.0, 2.0))
    write_volume(image, tmp_path / "image.nii.gz")
    centre = ",".join(str(int(v)) for v in np.argwhere(truth.array > 0).mean(axis=0)[::-1])
    command = [sys.executable, "-m", "segmentai_core.cli.main", "refine", str(tmp_path / "image.nii.gz"),
               "--fg", centre, "--ijk", "-o", str(tmp_path / "out.nii.gz"), "--timings"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # flushed whole before the process ended
    assert report["voxels"] == int(read_labelmap(tmp_path / "out.nii.gz").array.sum()) > 0
    assert "Wrote" in done.stderr
    missing = subprocess.run(command[:4] + [str(tmp_path / "missing.nii.gz")] + command[5:] + ["--overwrite"],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    usage = subprocess.run(command[:4], capture_output=True, text=True, timeout=300)
    assert usage.returncode == 2 and "required" in usage.stderr


def test_threads_are_joined_and_atexit_handlers_run_before_the_exit():
    done = _python("""
        import atexit, sys, threading, time
        from concurrent.futures import ThreadPoolExecutor
        from segmentai_core.cli.main import console

        atexit.register(lambda: print("atexit ran", flush=False))
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread finished", flush=False))).start()
        pool = ThreadPoolExecutor(max_workers=1)  # never shut down: its worker must still be stopped
        pool.submit(time.sleep, 0.1)
        sys.argv = ["segmentai", "--version"]
        console()
        print("not reached")
    """)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("segmentai ") and "thread finished" in lines and lines[-1] == "atexit ran"
    assert "not reached" not in done.stdout


def test_exit_codes_follow_sys_exit():
    for code, expected in (("None", 0), ("3", 3), ("'a message'", 1)):
        done = _python(f"from segmentai_core.cli.fast_exit import exit_now; exit_now({code})")
        assert done.returncode == expected
    assert "a message" in done.stderr

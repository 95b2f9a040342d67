#!/usr/bin/python3
"""meson test driver of a fuzz target's replay build: replay.py EXE TARGET SEEDS [DIR...]

Makes SEEDS/TARGET with make_seeds.py when it is missing (under a lock: the
targets' tests run in parallel), then runs EXE over it, over
tests/fuzz/regressions/TARGET (every crasher the fuzzer ever found) and over
any further DIR. EXE's exit status is the test's.
"""
import fcntl
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    exe, target, seeds = sys.argv[1:4]
    extra = sys.argv[4:]
    os.makedirs(seeds, exist_ok=True)
    with open(os.path.join(seeds, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isdir(os.path.join(seeds, target)):
            subprocess.run([sys.executable, os.path.join(HERE, "make_seeds.py"), seeds, "--targets", target],
                           check=True)
    dirs = [os.path.join(seeds, target)]
    regressions = os.path.join(HERE, "regressions", target)
    if os.path.isdir(regressions):
        dirs.append(regressions)
    dirs += extra
    print("replaying", " ".join(dirs), flush=True)
    sys.exit(subprocess.run([exe] + dirs).returncode)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Hostile-input suite (reliability.md T4-T8): test_hostile.py HOSTILE_CHECK [--tool NAME=EXE ...]

1. Writes the hostile corpus (hostile_gen.py) and opens every file, plus
   ../shared/corpus/malicious/, with hostile_check in one subprocess:
   each must end in one of its allowed outcomes (a typed ckpt::Error code,
   or "ok" where opening is right), never a crash or a foreign exception,
   within 1 s, the whole process within 256 MiB (RLIMIT_AS), writing no
   file (RLIMIT_FSIZE = 0, an empty working folder that must stay empty, the
   input folder unchanged) and running nothing (no CANARY-* file appears).
2. Sweeps: truncation at every length near both ends and at every zip
   record boundary; every bit of the zip headers, data.pkl, version and
   byteorder; 10,000 payload bit flips that verify() must catch by CRC.
3. With --tool, runs each tool (ckpt-info, ckpt-convert, ckpt-diff) on every
   hostile file: exit status 2, within 1 s and 256 MiB, nothing written.

Under AddressSanitizer (hostile_check says so) RLIMIT_AS cannot work (the
shadow memory reserves terabytes) and time runs ~3x slower: the memory
bound is then checked by peak RSS only and the time bound is 3 s. This is
the only difference, printed in the summary.
"""
import argparse
import glob
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import hostile_gen  # noqa: E402

MEM = 256 << 20
CORPUS = os.environ.get("CKPT_CORPUS", os.path.join(os.path.dirname(ROOT), "shared", "corpus"))

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL", msg, flush=True)


def limits(sanitized, writes):
    def apply():
        if not sanitized:
            resource.setrlimit(resource.RLIMIT_AS, (MEM, MEM))
        if not writes:
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))   # any write to a file kills (SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run(cmd, cwd, sanitized, timeout, writes=False):
    """Runs cmd under the limits; returns (returncode, stdout, stderr, seconds).
    A reader (writes=False) may not write a byte to any file."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=limits(sanitized, writes))
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        fail("%s: timed out after %d s" % (" ".join(cmd[:2]), timeout))
    seconds = time.monotonic() - t0
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace"), seconds


def peak_rss_children():
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def snapshot(d):
    out = {}
    for base, _, names in os.walk(d):
        for n in names:
            p = os.path.join(base, n)
            st = os.lstat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


def canaries(deep, shallow):
    found = []
    for d in deep:
        found += glob.glob(os.path.join(d, "**", "CANARY*"), recursive=True)
    for d in shallow:
        found += glob.glob(os.path.join(d, "CANARY*"))
    return found


def corpus_malicious():
    """The shared corpus's attack files with the outcome tests/corpus/expectations.tsv gives them."""
    exp = os.path.join(ROOT, "tests", "corpus", "expectations.tsv")
    cases = []
    if not os.path.isdir(os.path.join(CORPUS, "malicious")) or not os.path.exists(exp):
        return cases
    for line in open(exp):
        if line.startswith("#") or not line.startswith("malicious/"):
            continue
        name, expect = line.rstrip("\n").split("\t")[:2]
        allowed = {expect[len("error:"):]} if expect.startswith("error:") else {"ok"}
        cases.append(("corpus/" + name, os.path.join(CORPUS, name), allowed, "shared corpus"))
    return cases


def libhdf5_crashers():
    """Files that crash libhdf5 1.10.8 itself (fuzz_hdf5 findings): the tools
    must answer corrupt_hdf5, from the child process that reads HDF5 first."""
    d = os.path.join(ROOT, "tests", "fuzz", "regressions", "fuzz_hdf5")
    return [("fuzz_hdf5/" + n, os.path.join(d, n), {"corrupt_hdf5"}, "crashes or hangs libhdf5 1.10.8")
            for n in sorted(os.listdir(d)) if n.startswith("libhdf5-crash-") or n.startswith("libhdf5-hang-")]


# A file on which libhdf5 loops ends when the child reading it is stopped,
# after OpenOptions::hdf5_probe_cpu_s (2 s of CPU by default): that is its time bound.
HDF5_PROBE_S = 2.0


def check_open(check, cases, cwd, sanitized, max_s):
    rc, out, err, secs = run([check, "open"] + [c[1] for c in cases], cwd, sanitized, 300)
    if rc not in (0, 1):
        fail("hostile_check died (status %d) after: %s" % (rc, err.strip().splitlines()[-1:] if err else "?"))
    results = {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) >= 4:
            results[f[0]] = (f[1], f[2].split()[1] if f[1] == "error" else f[1], float(f[3]), f[4] if len(f) > 4 else "")
    codes = {}
    slowest = (0.0, "")
    for name, path, allowed, note in cases:
        if path not in results:
            fail("%s: no result (the process died on it?)" % name)
            continue
        verdict, outcome, seconds, detail = results[path]
        codes[outcome] = codes.get(outcome, 0) + 1
        slowest = max(slowest, (seconds, name))
        if verdict == "FOREIGN":
            fail("%s: %s" % (name, detail))
        elif outcome not in allowed:
            fail("%s: got %s, allowed %s (%s)" % (name, outcome, "/".join(sorted(allowed)), detail[:300]))
        if seconds > max_s:
            fail("%s: took %.2f s" % (name, seconds))
    print("open: %d files, outcomes %s; slowest %.3f s (%s)" % (
        len(cases), " ".join("%s=%d" % kv for kv in sorted(codes.items())), slowest[0], slowest[1]), flush=True)


def check_sweeps(check, work, cwd, sanitized):
    sample = os.path.join(work, "sample.pt")
    subprocess.run([check, "sample", sample], check=True)
    real = [os.path.join(CORPUS, p) for p in ("burn/pytorch-tests/complex_nested__complex_nested.pt",
                                              "burn/reader/simple_legacy.pt", "burn/reader/tar_multi_dtype.tar",
                                              "plain_pickles/pickle_jl__builtin_type_p4.pkl")]
    real = [p for p in real if os.path.exists(p)]
    zips = [sample] + [p for p in real if p.endswith("complex_nested.pt")]
    jobs = [["truncate", p] for p in [sample] + real] + [["bitflip", p] for p in zips] + \
           [["payload", p, "10000"] for p in zips]
    for job in jobs:
        rc, out, err, secs = run([check] + job, cwd, sanitized, 600)
        for line in out.splitlines():
            print("  " + line.replace(CORPUS + "/", "corpus/"), flush=True)
        if rc != 0:
            fail("%s %s: status %d %s" % (job[0], os.path.basename(job[1]), rc, err.strip()[-300:]))


def error_names():
    """The stable error code names, from docs/errors.md."""
    text = open(os.path.join(ROOT, "docs", "errors.md")).read()
    return set(re.findall(r"^\| *\d+ *\| `([a-z0-9_]+)` \|", text, re.M))


# Memo bombs are valid pickles: a tool may describe their shared structure
# without expanding it (exit 0), within the time bound.
TOOL_MAY_OPEN = {"billion_laughs.pkl", "billion_laughs_tensors.pt"}


def tool_cmd(name, exe, path, out_dir):
    if name == "ckpt-convert":
        return [exe, path, os.path.join(out_dir, "out.pt")], True
    if name == "ckpt-diff":
        return [exe, path, path], False
    return [exe, "--verify", path], False


def check_tools(tools, cases, work, sanitized, max_s):
    """Every tool on every hostile file: a typed error (exit 2; ckpt-info
    --verify may say 1, "a problem was found"), in time and memory, nothing
    written, nothing left behind."""
    names = error_names()
    for name, exe in tools:
        out_dir = os.path.join(work, "tool-out-" + name)
        os.makedirs(out_dir)
        bad = n = 0
        slowest = (0.0, "")
        for cname, path, allowed, note in cases:
            if "ok" in allowed:  # opening it is right: not a hostile file for a tool
                continue
            n += 1
            cmd, writes = tool_cmd(name, exe, path, out_dir)
            rc, out, err, secs = run(cmd, out_dir, sanitized, 60, writes)
            slowest = max(slowest, (secs, cname))
            # The message ends in "(...; <code>)" or "(<code>)" (docs/cli.md).
            codes = set(re.findall(r"[(; ]([a-z0-9_]+)\)\s*$", out + "\n" + err, re.M)) & names
            ok_rc = {1, 2} if name == "ckpt-info" else {2}
            opened = rc == 0 and cname in TOOL_MAY_OPEN
            problems = []
            if rc not in ok_rc and not opened:
                problems.append("exit %d" % rc)
            if not codes and not opened:
                problems.append("no typed error code in its message")
            elif allowed == {"corrupt_hdf5"} and "corrupt_hdf5" not in codes:
                problems.append("%s instead of corrupt_hdf5" % ",".join(sorted(codes)) or "exit %d" % rc)
            limit = max_s + (HDF5_PROBE_S if "libhdf5-hang-" in cname else 0.0)
            if secs > limit:
                problems.append("%.2f s" % secs)
            left = os.listdir(out_dir)
            if left:
                problems.append("left %s" % left)
                shutil.rmtree(out_dir)
                os.makedirs(out_dir)
            if problems:
                bad += 1
                fail("%s %s: %s: %s" % (name, cname, ", ".join(problems), (err or out).strip()[-300:]))
        print("%s: %d hostile files, %d failed; slowest %.2f s (%s)" % (
            name, n, bad, slowest[0], slowest[1]), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("check")
    ap.add_argument("--tool", action="append", default=[], help="NAME=EXE")
    ap.add_argument("--only", default="open,sweeps,tools")
    args = ap.parse_args()
    args.check = os.path.abspath(args.check)
    only = args.only.split(",")
    sanitized = subprocess.run([args.check, "sanitized"], stdout=subprocess.PIPE).stdout.strip() == b"1"
    max_s = 3.0 if sanitized else 1.0
    work = tempfile.mkdtemp(prefix="ckpt-hostile-")
    t0 = time.monotonic()
    try:
        gen = os.path.join(work, "gen")
        cwd = os.path.join(work, "cwd")
        os.makedirs(cwd)
        cases = [c for c in hostile_gen.build_all(gen)] + corpus_malicious()
        cases = [c for c in cases if not c[0].endswith("cases.tsv")]
        before = snapshot(gen)
        if "open" in only:
            check_open(args.check, cases, cwd, sanitized, max_s)
        if "sweeps" in only:
            check_sweeps(args.check, work, cwd, sanitized)
        tools = [t.split("=", 1) for t in args.tool]
        tools = [(n, os.path.abspath(e)) for n, e in tools if os.path.exists(e)]
        if "tools" in only and tools:
            crashers = libhdf5_crashers()
            if len(crashers) < 10:
                fail("expected the 10 libhdf5 crashers under tests/fuzz/regressions/fuzz_hdf5, found %d" % len(crashers))
            check_tools(tools, cases + crashers, work, sanitized, max_s)
        rss = peak_rss_children()
        if not sanitized and rss > MEM:
            fail("peak RSS %d MiB > 256 MiB" % (rss >> 20))
        if os.listdir(cwd):
            fail("files appeared in the working folder: %s" % os.listdir(cwd))
        if snapshot(gen) != before:
            fail("the hostile files changed")
        found = canaries([work], [tempfile.gettempdir(), os.getcwd(), os.path.expanduser("~")])
        if found:
            fail("code ran: %s" % found)
        print("hostile: %d cases; peak RSS %d MiB; %s; %.1f s; %d failures" % (
            len(cases), rss >> 20, "sanitized (RSS and 3 s bounds, no RLIMIT_AS)" if sanitized
            else "RLIMIT_AS 256 MiB, 1 s per case", time.monotonic() - t0, len(failures)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

"""Shared by the ckpt-diff tests: where the tool is, fixtures, running it."""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fixtures  # noqa: E402

CKPT_DIFF = os.environ.get('CKPT_DIFF') or os.path.join(HERE, '..', '..', 'build-diff', 'tools', 'diff', 'ckpt-diff')
SERIES = [fixtures.series_name(t) for t in range(fixtures.N_TASKS)]


def env():
    e = dict(os.environ)
    e.update({'NO_COLOR': '1', 'CKPT_NO_PROGRESS': '1'})
    e.pop('CKPT_FORCE_COLOR', None)
    return e


def run(args, cwd, check_rc=None):
    """Runs ckpt-diff; returns (rc, stdout, stderr)."""
    p = subprocess.run([CKPT_DIFF] + list(args), cwd=cwd, env=env(), capture_output=True, text=True)
    if check_rc is not None and p.returncode != check_rc:
        raise AssertionError(f'ckpt-diff {" ".join(args)}: exit {p.returncode}, expected {check_rc}\n'
                             f'stdout:\n{p.stdout}\nstderr:\n{p.stderr}')
    return p.returncode, p.stdout, p.stderr


def run_json(args, cwd, check_rc=None):
    rc, out, err = run(list(args) + ['--json'], cwd, check_rc)
    return rc, json.loads(out)


def workdir(what='all'):
    """A temporary folder with the fixtures `what` names (see fixtures.py)."""
    d = tempfile.mkdtemp(prefix='ckpt-diff-test-')
    subprocess.run([sys.executable, os.path.join(HERE, 'fixtures.py'), d, what], check=True)
    return d


class Failures:
    def __init__(self):
        self.errors = []
        self.checks = 0

    def check(self, cond, msg):
        self.checks += 1
        if not cond:
            self.errors.append(msg)

    def done(self, name):
        if self.errors:
            print(f'{name}: {len(self.errors)} of {self.checks} checks failed', file=sys.stderr)
            for e in self.errors:
                print('  - ' + e, file=sys.stderr)
            sys.exit(1)
        print(f'{name}: {self.checks} checks passed')

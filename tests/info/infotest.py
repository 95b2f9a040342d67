"""Shared helpers of the ckpt-info tests (run by meson with CKPT_INFO,
INFO_FIXTURES, INFO_TESTS, CKPT_DOCS and CKPT_CORPUS set; see meson.build).

Each test script exits 0 when every check passes, 1 on the first failures
(printed), 77 (meson's "skipped") when an input it needs is missing."""
import json
import os
import subprocess
import sys

SKIP = 77
INFO = os.environ.get('CKPT_INFO', '')
FIXTURES = os.environ.get('INFO_FIXTURES', '')
TESTS = os.environ.get('INFO_TESTS', os.path.dirname(os.path.abspath(__file__)))
DOCS = os.environ.get('CKPT_DOCS', os.path.join(TESTS, '..', '..', 'docs'))
CORPUS = os.environ.get('CKPT_CORPUS', '')

MAMMOTH = 'derpp_seq-mnist_None_200_1_20260101-120000_0badcafe_2.pt'
OLD_PICKLE = 'er_seq-mnist_200_1_20260101-120000_1.pt'
RESNET = 'sgd_seq-cifar10_None_0_50_20260101-120000_deadbeef_last.pt'


def need(path, what):
    if not path or not os.path.exists(path):
        print('SKIP: %s not found (%s)' % (what, path or 'unset'))
        sys.exit(SKIP)


def clean_env(**extra):
    """The environment ckpt-info runs in: no colour forcing, no progress bars."""
    env = {k: v for k, v in os.environ.items() if k not in ('NO_COLOR', 'CKPT_FORCE_COLOR', 'TERM')}
    env['CKPT_NO_PROGRESS'] = '1'
    env.update(extra)
    return env


def run(args, cwd=None, env=None, timeout=120):
    """Runs ckpt-info; returns (exit code, stdout, stderr) as text."""
    p = subprocess.run([INFO] + list(args), cwd=cwd or FIXTURES, env=env or clean_env(),
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode('utf-8', 'replace'), p.stderr.decode('utf-8', 'replace')


def run_json(args, cwd=None, env=None):
    code, out, err = run(['--json'] + list(args), cwd=cwd, env=env)
    try:
        doc = json.loads(out)
    except ValueError as e:
        raise AssertionError('--json output is not JSON (%s): %s\n%s' % (e, ' '.join(args), out[:500]))
    return code, doc, err


class Checks:
    """Collects failures; `ok` reports them and gives the exit status."""

    def __init__(self, name):
        self.name = name
        self.failures = []
        self.count = 0

    def check(self, cond, msg):
        self.count += 1
        if not cond:
            self.failures.append(msg)
        return cond

    def eq(self, got, want, msg):
        return self.check(got == want, '%s: got %r, want %r' % (msg, got, want))

    def finish(self):
        for f in self.failures[:50]:
            print('FAIL:', f)
        if len(self.failures) > 50:
            print('... %d more failures' % (len(self.failures) - 50))
        print('%s: %d checks, %d failed' % (self.name, self.count, len(self.failures)))
        sys.exit(1 if self.failures else 0)

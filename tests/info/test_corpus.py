#!/usr/bin/python3
"""ckpt-info on every file of the shared corpus (../shared/corpus).

Each file either gives a view (exit 0, stdout, nothing on stderr) or one
typed error line (exit 2): the error code is the one tests/corpus/
expectations.tsv records for libckpt. Every readable file also works with
--json, --stats, --verify and --tree. Malicious files are refused (exit 2,
unsafe_global or a container error) in well under a second, and --globals
shows why: the audit lists a denied global (exit 1). Nothing is executed:
no file appears anywhere.
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import infotest as it  # noqa: E402


def expectations():
    path = os.path.join(it.TESTS, '..', 'corpus', 'expectations.tsv')
    exp = {}
    for line in open(path, encoding='utf-8'):
        if line.startswith('#') or not line.strip():
            continue
        parts = line.rstrip('\n').split('\t')
        exp[parts[0]] = parts[1]
    return exp


def main():
    it.need(it.INFO, 'ckpt-info')
    it.need(it.CORPUS, 'the shared corpus')
    exp = expectations()
    files = sorted(os.path.relpath(os.path.join(d, f), it.CORPUS)
                   for d, _, fs in os.walk(it.CORPUS) for f in fs if f != 'MANIFEST.txt')
    c = it.Checks('info_corpus')
    c.check(len(files) >= 100, 'corpus has %d files' % len(files))
    with tempfile.TemporaryDirectory() as scratch:
        env = it.clean_env(HOME=scratch, TMPDIR=scratch)
        for f in files:
            want = exp.get(f)
            if not c.check(want is not None, '%s: not in tests/corpus/expectations.tsv' % f):
                continue
            t0 = time.monotonic()
            rc, out, err = it.run([f], cwd=it.CORPUS, env=env)
            dt = time.monotonic() - t0
            if want.startswith('error:'):
                code = want.split(':', 1)[1]
                c.eq(rc, 2, f + ' exit code')
                lines = err.splitlines()
                line = lines[0] if lines else ''
                c.check(len(lines) == 1 and line.startswith('ckpt-info: error: ')
                        and (line.endswith('; %s)' % code) or line.endswith('(%s)' % code)),
                        '%s: one line ending in the code %s: %r' % (f, code, err))
                c.eq(out, '', f + ' stdout')
            else:
                c.eq(rc, 0, f + ' exit code')
                c.eq(err, '', f + ' stderr')
                c.check(out.startswith(f + '\n') and '  layout ' in out and '  container ' in out,
                        f + ': header with container and layout')
                for opts in (['--json'], ['--stats'], ['--verify'], ['--tree'], ['--globals', '--full']):
                    rc2, out2, err2 = it.run(opts + [f], cwd=it.CORPUS, env=env)
                    c.check(rc2 == 0 and err2 == '', '%s %s: exit %d %s' % (f, ' '.join(opts), rc2, err2[:200]))
            if f.startswith('malicious/'):
                c.check(dt < 1.0, '%s: refused in %.2f s' % (f, dt))
                c.check(rc == 2, f + ': refused')
                if want == 'error:unsafe_global':
                    rc3, out3, _ = it.run(['--globals', f], cwd=it.CORPUS, env=env)
                    c.eq(rc3, 1, f + ' --globals exit code')
                    c.check('denied' in out3 and 'refused' in out3, f + ' --globals shows the denied global')
                    rc4, doc, _ = it.run_json(['--globals', f], cwd=it.CORPUS, env=env)
                    g = doc['files'][0].get('globals', [])
                    c.check(any(x['verdict'] == 'denied' for x in g), f + ' --json --globals lists a denied global')
        c.eq(os.listdir(scratch), [], 'nothing written to HOME/TMPDIR')
    c.finish()


if __name__ == '__main__':
    main()

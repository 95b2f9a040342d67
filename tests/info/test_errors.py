#!/usr/bin/python3
"""Every error path of ckpt-info and its conventions.

* Each failure is one stderr line "ckpt-info: error: ..." that names the file,
  says what is wrong in plain words and what to do, with no control
  characters; stdout stays empty (or holds the other files of a batch).
* Exit codes: 0 ok; 1 a problem found (--verify failed, a refused file under
  --globals, some files of a batch unreadable); 2 error (usage, no file read).
* Colour only on a terminal (checked under a real pty), never under NO_COLOR
  or TERM=dumb; --color always/never override.
* --help documents every option; --version answers.
"""
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import infotest as it  # noqa: E402

SGR = re.compile(r'\x1b\[[0-9;]*m')


def one_error_line(c, label, err, *needles):
    lines = err.splitlines()
    c.eq(len(lines), 1, label + ': stderr lines')
    line = lines[0] if lines else ''
    c.check(line.startswith('ckpt-info: error: '), label + ': prefix: ' + line)
    c.check(not re.search(r'[\x00-\x08\x0b-\x1f\x7f]', err), label + ': control characters in ' + repr(err))
    for n in needles:
        c.check(n in line, '%s: %r not in %r' % (label, n, line))


def on_pty(args, env):
    """Runs ckpt-info with stdout on a pseudo-terminal; returns its output."""
    master, slave = pty.openpty()
    p = subprocess.Popen([it.INFO] + args, cwd=it.FIXTURES, env=env, stdout=slave, stderr=subprocess.DEVNULL)
    os.close(slave)
    out = b''
    while True:
        r, _, _ = select.select([master], [], [], 10)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    p.wait(timeout=30)
    os.close(master)
    return out.decode('utf-8', 'replace')


def main():
    it.need(it.INFO, 'ckpt-info')
    it.need(os.path.join(it.FIXTURES, it.MAMMOTH), 'the fixtures')
    c = it.Checks('info_errors')

    cases = [  # (label, args, exit, needles in the one stderr line)
        ('missing file', ['no_such_file.pt'], 2, ['no_such_file.pt', 'No such file', 'io_error']),
        ('directory', ['.'], 2, ['is a directory']),
        ('empty file', ['empty.pt'], 2, ['empty', 'unknown_format']),
        ('truncated', ['truncated.pt'], 2, ['truncated', 'interrupted']),
        ('HTML page', ['download.pt'], 2, ['HTML page', 'download', 'html_page']),
        ('LFS pointer', ['lfs_pointer.pt'], 2, ['git lfs pull', 'lfs_pointer']),
        ('denied global', ['evil_reduce.pkl'], 2, ['posix.system', '--globals', 'unsafe_global']),
        ('unknown option', ['--frobnicate', it.MAMMOTH], 2, ['--frobnicate', '--help']),
        ('no file', [], 2, ['FILE', '--help']),
        ('negative depth', ['--tree', '--depth', '-1', it.MAMMOTH], 2, ['--depth']),
        ('bad colour', ['--color', 'sometimes', it.MAMMOTH], 2, ['--color']),
        ('verify missing file', ['--verify', 'no_such_file.pt'], 2, ['No such file']),
    ]
    for label, args, code, needles in cases:
        rc, out, err = it.run(args)
        c.eq(rc, code, label + ': exit code')
        c.eq(out, '', label + ': stdout')
        one_error_line(c, label, err, *needles)

    # A hostile file name is escaped in the error line too.
    with tempfile.TemporaryDirectory() as td:
        bad = os.path.join(td, 'evil\x1b[2Jname.pt')
        shutil.copyfile(os.path.join(it.FIXTURES, 'download.pt'), bad)
        rc, out, err = it.run([bad], cwd=td)
        c.eq(rc, 2, 'escaped name: exit')
        one_error_line(c, 'escaped name', err, 'evil\\x1b[2Jname.pt')

    # Exit codes of batches, --verify and --globals.
    for label, args, code in [
        ('all good', ['dataparallel.pt', 'legacy_mlp.pt'], 0),
        ('one bad of two', ['dataparallel.pt', 'download.pt'], 1),
        ('all bad', ['download.pt', 'empty.pt'], 2),
        ('corrupt, no --verify', ['corrupt_crc.pt'], 0),
        ('corrupt, --verify', ['--verify', 'corrupt_crc.pt'], 1),
        ('truncated, --verify', ['--verify', 'truncated.pt'], 1),
        ('intact, --verify', ['--verify', it.MAMMOTH, 'legacy_mlp.pt', 'scripted.pt'], 0),
        ('refused, --globals', ['--globals', 'evil_reduce.pkl'], 1),
        ('refused and good, --globals', ['--globals', 'evil_reduce.pkl', 'dataparallel.pt'], 1),
        ('json all bad', ['--json', 'download.pt'], 2),
        ('json corrupt --verify', ['--json', '--verify', 'corrupt_crc.pt'], 1),
    ]:
        rc, out, err = it.run(args)
        c.eq(rc, code, label + ': exit code')
    rc, out, err = it.run(['--verify', 'corrupt_crc.pt'])
    c.check('FAILED' in out and 'crc_mismatch' in out and 'data/0' in out, 'verify names the damaged entry: ' + out[:400])
    rc, doc, err = it.run_json(['--verify', 'corrupt_crc.pt', 'download.pt'])
    f0, f1 = doc['files']
    c.check(f0['ok'] and f0['verify']['ok'] is False and f0['verify']['error_code'] == 'crc_mismatch', 'json verify')
    c.check(f1['ok'] is False and f1['error']['code'] == 'html_page', 'json error entry')
    one_error_line(c, 'json error also on stderr', err, 'download.pt', 'HTML page')

    # --help and --version.
    rc, out, err = it.run(['--help'])
    c.eq(rc, 0, '--help exit')
    for opt in ('--json', '--tree', '--depth', '--filter', '--stats', '--globals', '--verify', '--full', '--color',
                'Exit status', 'NO_COLOR'):
        c.check(opt in out, '--help mentions ' + opt)
    rc, out, err = it.run(['--version'])
    c.check(rc == 0 and out.startswith('ckpt-info '), '--version: ' + out)

    # Colour: only on a terminal, never under NO_COLOR or TERM=dumb.
    base = it.clean_env(TERM='xterm')
    c.check(SGR.search(on_pty([it.MAMMOTH], base)), 'colour on a terminal')
    c.check(not SGR.search(on_pty([it.MAMMOTH], dict(base, NO_COLOR='1'))), 'no colour under NO_COLOR=1')
    c.check(not SGR.search(on_pty([it.MAMMOTH], dict(base, NO_COLOR=''))), 'no colour under NO_COLOR (empty)')
    c.check(not SGR.search(on_pty([it.MAMMOTH], dict(base, TERM='dumb'))), 'no colour under TERM=dumb')
    c.check(not SGR.search(on_pty(['--color', 'never', it.MAMMOTH], base)), 'no colour with --color never')
    c.check(not SGR.search(on_pty(['--json', it.MAMMOTH], base)), 'no colour in --json on a terminal')
    c.check(not SGR.search(it.run([it.MAMMOTH])[1]), 'no colour into a pipe')
    c.check(SGR.search(it.run(['--color', 'always', it.MAMMOTH])[1]), 'colour with --color always into a pipe')

    # Nothing is written anywhere: the fixture folder is unchanged after all this.
    before = sorted(os.listdir(it.FIXTURES))
    it.run(['--stats', '--verify', '--globals', it.MAMMOTH, 'evil_zip.pt'])
    c.eq(sorted(os.listdir(it.FIXTURES)), before, 'files in the fixture folder')
    c.finish()


if __name__ == '__main__':
    main()

#!/usr/bin/python3
"""Golden outputs of ckpt-diff: pairwise, module view, series, JSON, prefixes, edge cases.

Each case runs in the fixture folder (relative paths in the output) without
colour; the golden file holds stdout followed by "exit: N".
UPDATE_GOLDEN=1 rewrites the files (review the diff before committing).
"""
import difflib
import os
import shutil
import sys

from diffcommon import HERE, SERIES, Failures, run, workdir

S = SERIES
CASES = [
    ('pair_tasks', [S[1], S[2]]),
    ('pair_tasks_module', [S[1], S[2], '--section', 'model', '--by', 'module']),
    ('pair_tasks_json', [S[1], S[2], '--json', '--section', 'model,results,buffer', '--top', '4']),
    ('pair_same', [S[3], S[3]]),
    ('series', [S[3], S[0], S[1], S[2], S[4]]),                       # reordered by task index
    ('series_tensors', S + ['--by', 'tensor', '--section', 'model', '--top', '6']),
    ('series_json', S[:3] + ['--json', '--section', 'model,results', '--top', '3']),
    ('dp_none', [S[1], 'dp_1.pt', '--section', 'model']),             # no match: a hint
    ('dp_auto', [S[1], 'dp_1.pt', '--strip-prefix', 'auto']),
    ('plain_auto', ['plain_1.pt', S[1], '--strip-prefix', 'auto']),
    ('edge', ['edge_a.pt', 'edge_b.pt', '--all', '--top', '0']),
    ('edge_tolerance', ['edge_a.pt', 'edge_b.pt', '--rtol', '0.01', '--atol', '1e-3', '--equal-nan']),
]


def main():
    update = os.environ.get('UPDATE_GOLDEN') == '1'
    gold_dir = os.path.join(HERE, 'golden')
    work = workdir('all')
    f = Failures()
    try:
        for name, args in CASES:
            rc, out, err = run(args, work)
            got = out + f'exit: {rc}\n'
            path = os.path.join(gold_dir, name + ('.json.txt' if '--json' in args else '.txt'))
            if update:
                with open(path, 'w') as fh:
                    fh.write(got)
                continue
            with open(path) as fh:
                want = fh.read()
            if got != want:
                diff = ''.join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                                    'golden/' + os.path.basename(path), 'actual'))
                f.check(False, f'{name}: output differs from golden\n{diff}\nstderr: {err}')
            else:
                f.check(True, name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if update:
        print('golden files rewritten')
        return
    f.done('test_golden')


if __name__ == '__main__':
    main()

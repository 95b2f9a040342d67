#!/usr/bin/python3
"""Tolerance edge cases (NaN, Inf, -0.0, integers, bool, f16/bf16/f64, complex),
prefix matching and exit codes of ckpt-diff, checked against torch where torch
has an opinion (torch.testing.assert_close)."""
import json
import os
import shutil
import subprocess
import sys

import torch

from diffcommon import SERIES, Failures, run, run_json, workdir

# key -> (status, verdict) with the default tolerances
EXPECTED = {
    'nan_same': ('compared', 'identical'),
    'nan_vs_number': ('compared', 'changed'),
    'nan_payload': ('compared', 'changed'),
    'inf_same': ('compared', 'identical'),
    'inf_vs_finite': ('compared', 'changed'),
    'inf_sign': ('compared', 'changed'),
    'neg_zero': ('compared', 'within_tolerance'),
    'f32_within_atol': ('compared', 'within_tolerance'),
    'f32_beyond': ('compared', 'changed'),
    'f16_within': ('compared', 'within_tolerance'),
    'f16_beyond': ('compared', 'changed'),
    'bf16_within': ('compared', 'within_tolerance'),
    'bf16_beyond': ('compared', 'changed'),
    'f64_within': ('compared', 'within_tolerance'),
    'f64_beyond': ('compared', 'changed'),
    'c64_within': ('compared', 'within_tolerance'),
    'c64_beyond': ('compared', 'changed'),
    'int_same': ('compared', 'identical'),
    'int_off_by_one': ('compared', 'changed'),
    'int64_beyond_2p53': ('compared', 'changed'),
    'uint8_same': ('compared', 'identical'),
    'bool_flip': ('compared', 'changed'),
    'bool_same': ('compared', 'identical'),
    'strided_vs_contiguous': ('compared', 'identical'),
    'dtype_f32_to_f64': ('compared', 'identical'),
    'shape_change': ('shape_changed', 'changed'),
    'head.weight': ('grown', 'identical'),
    'zeros_to_ones': ('compared', 'changed'),
}


def strict_loads(text):
    def bad(c):
        raise ValueError(f'non-JSON number {c}')
    return json.loads(text, parse_constant=bad)


def assert_close_fails(a, b, equal_nan):
    try:
        torch.testing.assert_close(b, a, equal_nan=equal_nan)
        return False
    except AssertionError:
        return True


def check_edge(f, work):
    rc, out, _ = run(['edge_a.pt', 'edge_b.pt', '--json'], work)
    f.check(rc == 1, f'edge pair: exit {rc}, expected 1')
    rep = strict_loads(out)
    got = {t['key']: t for t in rep['model']['tensors']}
    for key, (status, verdict) in EXPECTED.items():
        t = got.get(key)
        if t is None:
            f.check(False, f'{key}: missing from the report')
            continue
        f.check((t['status'], t['verdict']) == (status, verdict),
                f'{key}: {t["status"]}/{t["verdict"]}, expected {status}/{verdict}')
    f.check([n['key'] for n in rep['model']['only_in_a']] == ['only_in_a'], 'only_in_a listed')
    f.check([n['key'] for n in rep['model']['only_in_b']] == ['only_in_b'], 'only_in_b listed')
    inf = got['inf_sign']
    f.check(inf['max_abs'] is None and inf['nonfinite'].get('max_abs') == 'inf', 'infinite max_abs is null + "inf"')
    z = got['zeros_to_ones']
    f.check(z['rel_change'] is None and z['nonfinite'].get('rel_change') == 'inf', 'rel change from zeros is inf')
    f.check(z['cosine'] is None and z['nonfinite'].get('cosine') == 'nan', 'cosine against zeros is undefined')
    f.check(got['nan_vs_number']['nan_pairs'] == 1, 'NaN pairs are counted')
    f.check(got['neg_zero']['differing'] == 2 and got['neg_zero']['mismatched'] == 0, '-0.0 vs 0.0: bits differ, values match')
    f.check(got['dtype_f32_to_f64']['differs'] and got['dtype_f32_to_f64']['dtype_b'] == 'float64', 'dtype change differs')
    f.check(got['head.weight']['added_rows'] == 2 and got['head.weight']['differs'], 'grown head: 2 added rows, differs')
    f.check(got['bf16_within']['rtol'] == 0.016 and got['int_same']['rtol'] == 0, 'per-dtype tolerances')

    # The verdicts agree with torch.testing.assert_close(b, a) wherever shape and
    # dtype match. NaN: ckpt-diff lets identical bits match (a file equals
    # itself), assert_close(equal_nan=False) does not, so NaN pairs are
    # compared with equal_nan=True on both sides.
    a = torch.load(os.path.join(work, 'edge_a.pt'))
    b = torch.load(os.path.join(work, 'edge_b.pt'))
    _, rep_nan = run_json(['edge_a.pt', 'edge_b.pt', '--equal-nan'], work)
    got_nan = {t['key']: t for t in rep_nan['model']['tensors']}
    for key in EXPECTED:
        if key not in a or a[key].shape != b[key].shape or a[key].dtype != b[key].dtype:
            continue
        has_nan = bool(torch.isnan(a[key]).any() or torch.isnan(b[key]).any())
        for equal_nan, table in ((False, got), (True, got_nan)):
            if has_nan and not equal_nan:
                continue
            fails = assert_close_fails(a[key], b[key], equal_nan)
            mine = table[key]['verdict'] == 'changed'
            f.check(mine == fails, f'{key} (equal_nan={equal_nan}): ckpt-diff says '
                    f'{table[key]["verdict"]}, assert_close {"fails" if fails else "passes"}')
    f.check(got_nan['nan_payload']['verdict'] == 'within_tolerance', '--equal-nan: NaN payloads match')

    # --rtol/--atol override every dtype.
    _, loose = run_json(['edge_a.pt', 'edge_b.pt', '--rtol', '0.01', '--atol', '1e-3'], work)
    lt = {t['key']: t for t in loose['model']['tensors']}
    f.check(lt['f32_beyond']['verdict'] == 'within_tolerance', '--rtol 0.01: f32_beyond within')
    f.check(lt['int_off_by_one']['verdict'] == 'changed', '--rtol 0.01: 3 vs 4 still changed')
    f.check(lt['f32_beyond']['rtol'] == 0.01 and lt['int_same']['atol'] == 1e-3, 'overrides reported')


def check_exit_codes(f, work):
    S = SERIES

    def expect(args, code, what, stdout_empty=None, stderr_has=None):
        rc, out, err = run(args, work)
        f.check(rc == code, f'{what}: exit {rc}, expected {code} (stderr: {err.strip()[:200]})')
        if stdout_empty is not None:
            f.check((out == '') == stdout_empty, f'{what}: stdout {"not " if stdout_empty else ""}empty')
        if stderr_has:
            f.check(stderr_has in err, f'{what}: stderr lacks {stderr_has!r}: {err.strip()[:200]}')
        return out, err

    expect([S[3], S[3]], 0, 'a file against itself')
    expect([S[3], S[3], '--quiet'], 0, 'same, --quiet', stdout_empty=True)
    expect([S[1], S[2], '-q'], 1, 'two tasks, --quiet', stdout_empty=True)
    expect([S[1], S[2]], 1, 'two tasks')
    expect([S[2], S[2], S[2]], 0, 'an unchanging series')
    expect(S, 1, 'a series')
    expect([S[1], S[2], '--section', 'args'], 0, 'two tasks of one run: same args')
    expect([S[2], S[3], '--section', 'args'], 1, 'a resumed run: args differ')
    expect([S[1], S[2], '--section', 'scheduler'], 0, 'no scheduler in either')
    expect(['edge_a.pt', 'edge_b.pt', '--section', 'args,results,buffer,optimizer'], 0, 'plain state dicts: no sections')
    expect([S[1], 'dp_1.pt', '--section', 'model'], 1, 'DataParallel keys without --strip-prefix')
    expect([S[1], 'dp_1.pt', '--strip-prefix', 'auto'], 0, 'DataParallel with --strip-prefix auto')
    expect(['plain_1.pt', S[1], '--strip-prefix', 'auto', '--section', 'model'], 0, 'plain backbone vs Mammoth (auto)')
    expect(['dp_1.pt', S[1], '--strip-prefix', 'net.module', '--section', 'model'], 1, 'literal prefix: net.module.')
    expect(['missing.pt', S[1]], 2, 'a missing file', stderr_has='ckpt-diff: error:')
    expect(['page.html.pt', S[1]], 2, 'an HTML page', stderr_has='HTML')
    expect(['collide.pt', 'collide.pt', '--strip-prefix', 'auto'], 2, 'stripping collides', stderr_has='collide')
    expect([S[1]], 2, 'one file')
    expect([S[1], S[2], '--bogus'], 2, 'an unknown option')
    expect([S[1], S[2], '--section', 'modle'], 2, 'an unknown section', stderr_has='unknown section')
    expect([S[1], S[2], '--by', 'layer'], 2, 'a bad --by')
    out, _ = expect(['--help'], 0, '--help')
    f.check('Exit status' in out and '--strip-prefix' in out, '--help explains exit status and options')
    rc, out, _ = run([S[1], S[2], '--json'], work)
    f.check(rc == 1, f'--json keeps the exit status ({rc})')
    try:
        strict_loads(out)
        f.check(True, 'json')
    except ValueError as e:
        f.check(False, f'--json output is not strict JSON: {e}')


def check_threads_deterministic(f, work):
    outs = []
    for threads in ('1', '2', '3'):
        os.environ['CKPT_THREADS'] = threads
        outs.append(run(['stats_a.pt', 'stats_b.pt', '--json'], work)[1])
    os.environ.pop('CKPT_THREADS')
    f.check(outs[0] == outs[1] == outs[2], 'the same JSON with 1, 2 and 3 threads')


def check_mammoth_modes(f, work):
    """A Mammoth MNISTMLP checkpoint (16 keys, 6 storages) in safe and old_pickle
    mode (argparse.Namespace args, a pickled utils.buffer.Buffer), written by
    tests/pylib/mammoth_ref.py: the same model, results and buffer."""
    ref = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'pylib', 'mammoth_ref.py')
    if not os.path.exists(ref):
        print('mammoth_ref.py absent: safe/old_pickle check skipped')
        return
    for mode in ('safe', 'old_pickle'):
        subprocess.run([sys.executable, ref, 'write', '--arch', 'mnistmlp', '--out', os.path.join(work, mode + '.pt'),
                        '--model', 'derpp', '--buffer-size', '20', '--seed', '3', '--mode', mode],
                       check=True, capture_output=True)
    rc, rep = run_json(['safe.pt', 'old_pickle.pt', '--section', 'model,results'], work)
    f.check(rc == 0, f'safe vs old_pickle (model, results): exit {rc}')
    t = rep['model']['tensors']
    f.check(len(t) == 6 and sum(len(x['aliases']) for x in t) == 10, 'MNISTMLP: 6 tensors, 10 alias keys folded')
    f.check(rep['results']['logger']['differs'] is False, 'logger means as str (safe) equal numbers (old_pickle)')
    rc, rep = run_json(['safe.pt', 'old_pickle.pt', '--section', 'buffer'], work)
    b = rep['buffer']
    f.check(b['present'] == [True, True] and b['summary']['identical'] == b['summary']['compared'] > 0,
            f'the old_pickle Buffer object\'s tensors are found and equal: {b["summary"]}')


def main():
    work = workdir('all')
    with open(os.path.join(work, 'page.html.pt'), 'w') as fh:
        fh.write('<!DOCTYPE html><html><body>Sign in</body></html>\n')
    torch.save({'module.fc.weight': torch.ones(1), 'fc.weight': torch.zeros(1)}, os.path.join(work, 'collide.pt'))
    f = Failures()
    try:
        check_edge(f, work)
        check_exit_codes(f, work)
        check_threads_deterministic(f, work)
        check_mammoth_modes(f, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    f.done('test_edge')


if __name__ == '__main__':
    main()

#!/usr/bin/python3
"""Golden outputs of ckpt-info on representative files.

Each case runs ckpt-info in the fixture folder (relative file names, so no
path varies) and compares exit code, stdout and stderr with
tests/info/golden/<case>.txt. Corpus cases run in ../shared/corpus.

Regenerate after an intended change of the output:
    CKPT_UPDATE_GOLDEN=1 meson test -C <build> info_golden
and review the diff of tests/info/golden/ before committing it.
"""
import difflib
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import infotest as it  # noqa: E402

M, OLD, RES = it.MAMMOTH, it.OLD_PICKLE, it.RESNET

# (case, arguments, where: 'fx' fixtures | 'corpus', extra environment)
CASES = [
    ('mammoth_safe', [M], 'fx', {}),
    ('mammoth_safe_json', ['--json', M], 'fx', {}),
    ('mammoth_safe_stats_filter', ['--stats', '--filter', 'net.fc*', '--filter', 'examples', M], 'fx', {}),
    ('mammoth_safe_full', ['--full', M], 'fx', {}),
    ('mammoth_safe_tree', ['--tree', '--depth', '2', M], 'fx', {}),
    ('mammoth_safe_globals_verify', ['--globals', '--verify', M], 'fx', {}),
    ('mammoth_safe_zst', [M + '.zst'], 'fx', {}),
    ('export_hdf5', ['mammoth_export.h5'], 'fx', {}),
    ('export_safetensors', ['--stats', 'mammoth_export.safetensors'], 'fx', {}),
    ('mammoth_old_pickle_globals', ['--globals', OLD], 'fx', {}),
    ('mammoth_resnet18_folded', [RES], 'fx', {}),
    ('legacy', ['legacy_mlp.pt'], 'fx', {}),
    ('plain_state_dict_stats', ['--stats', 'plain_state_dict.pt'], 'fx', {'CKPT_THREADS': '2'}),
    ('plain_state_dict_json_stats', ['--json', '--stats', 'plain_state_dict.pt'], 'fx', {'CKPT_THREADS': '3'}),
    ('dataparallel', ['dataparallel.pt', 'compiled_dp.pt'], 'fx', {}),
    ('lightning', ['lightning.ckpt'], 'fx', {}),
    ('optimizer_only', ['adam_state.pt'], 'fx', {}),
    ('control_chars', ['control_chars.pt'], 'fx', {}),
    ('control_chars_json', ['--json', 'control_chars.pt'], 'fx', {}),
    ('torchscript', ['scripted.pt'], 'fx', {}),
    ('broken', ['truncated.pt', 'download.pt', 'lfs_pointer.pt', 'empty.pt'], 'fx', {}),
    ('broken_json', ['--json', 'truncated.pt', 'download.pt'], 'fx', {}),
    ('batch_one_bad', ['dataparallel.pt', 'download.pt'], 'fx', {}),
    ('verify_corrupt', ['--verify', 'corrupt_crc.pt'], 'fx', {}),
    ('evil_refused', ['evil_reduce.pkl'], 'fx', {}),
    ('evil_globals', ['--globals', 'evil_zip.pt', 'evil_reduce.pkl'], 'fx', {}),
    ('evil_globals_json', ['--json', '--globals', 'evil_zip.pt'], 'fx', {}),
    ('color_always', ['--color', 'always', 'adam_state.pt'], 'fx', {}),
    ('missing_file', ['no_such_file.pt'], 'fx', {}),
    ('directory', ['.'], 'fx', {}),
    ('unknown_option', ['--frobnicate', M], 'fx', {}),
    ('no_file', [], 'fx', {}),
    ('corpus_full_model_pickle', ['burn/examples/mnist__burn-import-2024.pt'], 'corpus', {}),
    ('corpus_plain_pickle', ['plain_pickles/pickle_jl__builtin_type_p2.pkl'], 'corpus', {}),
    ('corpus_tar', ['burn/reader/tar_multi_dtype.tar'], 'corpus', {}),
    ('corpus_malicious_globals', ['--globals', 'malicious/picklescan__keyerror-exploit.pkl',
                                  'malicious/modelscan__unsafe_zip_pytorch.pt'], 'corpus', {}),
]


# Files that zstd or libhdf5 wrote: their byte count follows the library's
# version, not ckpt-info, so the golden file holds it masked (the rest of
# the size line, such as the decompressed size, stays exact).
LIBRARY_SIZED = {'mammoth_safe_zst', 'export_hdf5'}


def mask_size(text):
    return re.sub(r'^(  size +)[0-9.]+ [KMG]?i?B \([0-9,]+ bytes\)', r'\1<library-dependent>', text, flags=re.M)


def render(args, code, out, err):
    return '$ ckpt-info %s\nexit: %d\n--- stdout\n%s--- stderr\n%s' % (' '.join(args), code, out, err)


def main():
    it.need(it.INFO, 'ckpt-info')
    it.need(os.path.join(it.FIXTURES, it.MAMMOTH), 'the fixtures (make_fixtures.py)')
    update = os.environ.get('CKPT_UPDATE_GOLDEN') == '1'
    golden_dir = os.path.join(it.TESTS, 'golden')
    os.makedirs(golden_dir, exist_ok=True)
    c = it.Checks('info_golden')
    for case, args, where, env in CASES:
        cwd = it.FIXTURES if where == 'fx' else it.CORPUS
        if where == 'corpus' and not os.path.isdir(cwd or ''):
            print('skip %s: no corpus' % case)
            continue
        code, out, err = it.run(args, cwd=cwd, env=it.clean_env(**env))
        got = render(args, code, out, err)
        if case in LIBRARY_SIZED:
            masked = mask_size(got)
            c.check(masked != got, '%s: no size line to mask' % case)
            got = masked
        path = os.path.join(golden_dir, case + '.txt')
        if update:
            with open(path, 'w', encoding='utf-8') as f:
                f.write(got)
            continue
        if not c.check(os.path.exists(path), '%s: no golden file %s (run with CKPT_UPDATE_GOLDEN=1)' % (case, path)):
            continue
        want = open(path, encoding='utf-8').read()
        if got != want:
            diff = ''.join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), 'golden/' + case + '.txt',
                                                'ckpt-info output', n=2))
            c.check(False, '%s differs from its golden file:\n%s' % (case, diff[:4000]))
        else:
            c.check(True, case)
    if update:
        print('golden files written to %s; review `git diff tests/info/golden`' % golden_dir)
    c.finish()


if __name__ == '__main__':
    main()

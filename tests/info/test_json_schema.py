#!/usr/bin/python3
"""ckpt-info --json follows its documented schema.

* A small JSON-Schema validator (stdlib only; the subset json_schema.json
  uses) checks the output for every fixture under several option sets, for
  error and refused entries, and for a sample of the shared corpus.
* Every property the schema names is documented in docs/json.md.
* Non-finite values: null plus a flag (stats.nonfinite, the nonfinite list).
* jq (if installed) reads the output with the filters docs/json.md shows.
"""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import infotest as it  # noqa: E402


class SchemaError(Exception):
    pass


def validate(value, schema, root, where='$'):
    if '$ref' in schema:
        name = schema['$ref'].split('/')[-1]
        return validate(value, root['definitions'][name], root, where)
    if 'const' in schema and value != schema['const']:
        raise SchemaError('%s: %r is not %r' % (where, value, schema['const']))
    if 'enum' in schema and value not in schema['enum']:
        raise SchemaError('%s: %r not in %r' % (where, value, schema['enum']))
    if 'type' in schema:
        types = schema['type'] if isinstance(schema['type'], list) else [schema['type']]
        if not any(type_ok(value, t) for t in types):
            raise SchemaError('%s: %s is not of type %s' % (where, json.dumps(value)[:80], types))
    if 'minimum' in schema and isinstance(value, (int, float)) and value < schema['minimum']:
        raise SchemaError('%s: %r < %r' % (where, value, schema['minimum']))
    for key in ('anyOf', 'oneOf'):
        if key in schema:
            errors, passed = [], 0
            for sub in schema[key]:
                try:
                    validate(value, sub, root, where)
                    passed += 1
                except SchemaError as e:
                    errors.append(str(e))
            if passed == 0 or (key == 'oneOf' and passed > 1):
                raise SchemaError('%s: %s matched %d alternatives: %s' % (where, key, passed, '; '.join(errors)[:600]))
    if isinstance(value, dict):
        props = schema.get('properties', {})
        for r in schema.get('required', []):
            if r not in value:
                raise SchemaError('%s: missing %r' % (where, r))
        for k, v in value.items():
            if k in props:
                validate(v, props[k], root, '%s.%s' % (where, k))
            elif schema.get('additionalProperties') is False:
                raise SchemaError('%s: unexpected property %r' % (where, k))
    if isinstance(value, list) and 'items' in schema:
        for i, v in enumerate(value):
            validate(v, schema['items'], root, '%s[%d]' % (where, i))


def type_ok(v, t):
    return {'object': isinstance(v, dict), 'array': isinstance(v, list), 'string': isinstance(v, str),
            'boolean': isinstance(v, bool), 'null': v is None,
            'integer': isinstance(v, int) and not isinstance(v, bool),
            'number': isinstance(v, (int, float)) and not isinstance(v, bool)}[t]


def property_names(schema, out):
    if isinstance(schema, dict):
        for k, v in schema.get('properties', {}).items():
            out.add(k)
        for v in schema.values():
            property_names(v, out)
    elif isinstance(schema, list):
        for v in schema:
            property_names(v, out)
    return out


RUNS = [
    [it.MAMMOTH], ['--stats', it.MAMMOTH], ['--tree', it.MAMMOTH], ['--globals', '--verify', it.MAMMOTH],
    ['--filter', 'net.fc*', '--stats', it.MAMMOTH], [it.MAMMOTH + '.zst'], ['--stats', it.OLD_PICKLE],
    [it.RESNET], ['legacy_mlp.pt'], ['--stats', 'plain_state_dict.pt'], ['dataparallel.pt', 'compiled_dp.pt'],
    ['lightning.ckpt'], ['--stats', 'adam_state.pt'], ['control_chars.pt'], ['scripted.pt'],
    ['--verify', 'corrupt_crc.pt'], ['truncated.pt', 'download.pt', 'lfs_pointer.pt', 'empty.pt', 'nope.pt'],
    ['--globals', 'evil_zip.pt', 'evil_reduce.pkl'], ['evil_zip.pt'],
    ['--stats', '--verify', 'mammoth_export.h5'], ['--stats', '--tree', 'mammoth_export.safetensors'],
]

CORPUS_SAMPLE = ['burn/examples/mnist__burn-import-2024.pt', 'burn/reader/tar_multi_dtype.tar',
                 'burn/reader/special_values.pt', 'burn/reader/complex_structure.pt',
                 'plain_pickles/pickle_jl__csr_mat.pkl', 'plain_pickles/pickle_jl__builtin_type_p4.pkl',
                 'picklescan/pytorch_model.bin', 'malicious/picklescan__keyerror-exploit.pkl']


def main():
    it.need(it.INFO, 'ckpt-info')
    it.need(os.path.join(it.FIXTURES, it.MAMMOTH), 'the fixtures')
    schema = json.load(open(os.path.join(it.TESTS, 'json_schema.json')))
    c = it.Checks('info_json_schema')
    docs = []
    for args in RUNS:
        _, doc, _ = it.run_json(args)
        docs.append((args, doc))
    if os.path.isdir(it.CORPUS):
        for f in CORPUS_SAMPLE:
            _, doc, _ = it.run_json(['--stats', '--globals', '--tree', f], cwd=it.CORPUS)
            docs.append(([f], doc))
    for args, doc in docs:
        try:
            validate(doc, schema, schema)
            c.check(True, '')
        except SchemaError as e:
            c.check(False, '%s: %s' % (' '.join(args), e))

    # Every property of the schema is documented (as `name`) in docs/json.md.
    doc_path = os.path.join(it.DOCS, 'json.md')
    if c.check(os.path.exists(doc_path), 'docs/json.md missing'):
        text = open(doc_path, encoding='utf-8').read()
        for name in sorted(property_names(schema, set())):
            c.check('`%s`' % name in text, 'property %r of the schema is not documented in docs/json.md' % name)
        m = re.search(r'schema_version[^0-9]*(\d+)', text)
        c.check(m and int(m.group(1)) == 1, 'docs/json.md names schema_version 1')

    # NaN and Inf: null plus a flag.
    _, doc, _ = it.run_json(['--stats', 'plain_state_dict.pt'])
    rows = {r['name']: r for r in doc['files'][0]['model']['rows']}
    enc = rows['encoder.weight']['stats']
    c.check(enc['nonfinite'] and enc['nan'] == 1 and enc['posinf'] == 1 and enc['neginf'] == 1,
            'encoder.weight: NaN/Inf counted and flagged: %r' % enc)
    c.check(all(isinstance(enc[k], float) for k in ('min', 'max', 'mean', 'std')), 'finite stats stay numbers')
    nan = rows['all_nan']['stats']
    c.check(nan['nonfinite'] and all(nan[k] is None for k in ('min', 'max', 'mean', 'std')),
            'an all-NaN tensor: min/max/mean/std null, flagged: %r' % nan)
    raw = it.run(['--json', '--stats', 'plain_state_dict.pt'])[1]
    c.check('NaN' not in raw and 'Infinity' not in raw, 'no NaN/Infinity literals in the JSON')

    # Control characters: escaped in names, flagged.
    _, doc, _ = it.run_json(['control_chars.pt'])
    raw = it.run(['--json', 'control_chars.pt'])[1]
    c.check('\x1b' not in raw and '\\u001b' not in raw, 'no ESC (raw or \\u001b) in the JSON')
    esc = [r for r in doc['files'][0]['model']['rows'] if r['escaped']]
    c.eq(len(esc), 3, 'rows flagged escaped')

    # jq reads it.
    if shutil.which('jq'):
        out = subprocess.run([it.INFO, '--json', it.MAMMOTH, 'download.pt'], cwd=it.FIXTURES, capture_output=True,
                             env=it.clean_env()).stdout
        for flt, want in [('.files[0].layout.kind', '"mammoth"'), ('.files[0].model.storages', '6'),
                          ('.files[0].results.class_il_mean | length', '3'),
                          ('.files[1].error.code', '"html_page"'),
                          ('[.files[0].model.rows[] | select(.alias_of != null)] | length', '10'),
                          ('.files[0].file_name.task_index', '2')]:
            r = subprocess.run(['jq', '-c', flt], input=out, capture_output=True)
            c.eq(r.stdout.decode().strip(), want, 'jq ' + flt)
    else:
        print('note: jq not installed, jq checks skipped')
    c.finish()


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
"""Rewrites the case tables of docs/conformance.md from `coh-conformance --list`
(each '## GROUP: ...' section's table; the prose stays).
   tests/conformance/update-docs.py COH_CONFORMANCE DOC"""
import re, subprocess, sys

binary, doc = sys.argv[1], sys.argv[2]
rows = {}
for line in subprocess.run([binary, '--list'], capture_output=True, text=True, check=True).stdout.splitlines()[2:]:
    cells = [c.strip() for c in line.strip('|').split('|')]
    rows.setdefault(cells[1], []).append('| %s | %s | %s |' % (cells[0], cells[2], cells[3]))
out, group, skipping = [], None, False
for line in open(doc).read().split('\n'):
    m = re.match(r'^## ([a-z]+):', line)
    if m:
        group = m.group(1)
    if line.startswith('| case |') and group:
        out.append('| case | proves | skipped on |')
        out.append('|---|---|---|')
        out.extend(rows.pop(group, []))
        skipping = True
        continue
    if skipping:
        if line.startswith('|'):
            continue
        skipping = False
    out.append(line)
if rows:
    sys.exit('update-docs: no section for group(s) %s' % ', '.join(rows))
open(doc, 'w').write('\n'.join(out))

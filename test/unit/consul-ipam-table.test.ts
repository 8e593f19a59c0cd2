// The plain-text tables of consul-ipam.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderTable } from '../../src/cli/table';

test('columns are padded to their widest cell and numbers line up on the right', () => {
  const text = renderTable(
    [{ heading: 'POOL' }, { heading: 'SIZE', right: true }, { heading: 'RANGES' }],
    [
      ['web', '61', '10.0.20.0/23'],
      ['v6-long-name', '18446744073709551615', 'fd00:1::/64'],
    ],
  );
  assert.equal(
    text,
    ['POOL                          SIZE  RANGES', 'web                             61  10.0.20.0/23', 'v6-long-name  18446744073709551615  fd00:1::/64'].join('\n'),
  );
});

test('no line ends in spaces, even with an empty last cell', () => {
  const text = renderTable([{ heading: 'IP' }, { heading: 'NOTE' }], [['10.0.0.1', ''], ['10.0.0.2', 'static']]);
  for (const line of text.split('\n')) assert.equal(line, line.trimEnd());
  assert.equal(text.split('\n')[1], '10.0.0.1');
});

test('a table without rows is its heading line', () => assert.equal(renderTable([{ heading: 'A' }, { heading: 'B' }], []), 'A  B'));

// The --range argument of `consul-ipam pool set`: what it writes, and what it refuses with which words.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../../src/cli/cli-errors';
import { parseRangeArgument, parseRangeArguments } from '../../src/cli/range-argument';
import { parsePoolDefinition } from '../../src/services/kv-layout';

describe('parseRangeArgument: accepted', () => {
  const cases: Array<[string, string, object, [string, string]]> = [
    ['a subnet alone', '10.0.20.0/23', { subnet: '10.0.20.0/23' }, ['10.0.20.1', '10.0.21.254']],
    ['all four fields', '10.0.20.0/23,10.0.21.100,10.0.21.150,10.0.20.1', { subnet: '10.0.20.0/23', rangeStart: '10.0.21.100', rangeEnd: '10.0.21.150', gateway: '10.0.20.1' }, ['10.0.21.100', '10.0.21.150']],
    ['empty start and end, a gateway', '10.0.20.0/23,,,10.0.20.1', { subnet: '10.0.20.0/23', gateway: '10.0.20.1' }, ['10.0.20.1', '10.0.21.254']],
    ['only an end', '10.0.20.0/23,,10.0.20.9', { subnet: '10.0.20.0/23', rangeEnd: '10.0.20.9' }, ['10.0.20.1', '10.0.20.9']],
    ['spaces around fields', ' 10.0.20.0/23 , 10.0.20.5 ', { subnet: '10.0.20.0/23', rangeStart: '10.0.20.5' }, ['10.0.20.5', '10.0.21.254']],
    ['IPv6 written in canonical form', 'FD00:0001::/64,FD00:1:0:0::10', { subnet: 'fd00:1::/64', rangeStart: 'fd00:1::10' }, ['fd00:1::10', 'fd00:1::ffff:ffff:ffff:ffff']],
  ];
  for (const [label, argument, definition, [start, end]] of cases) {
    test(label, () => {
      const parsed = parseRangeArgument(argument);
      assert.deepEqual(parsed.definition, definition);
      assert.deepEqual([parsed.range.start, parsed.range.end], [start, end]);
      // What is written is what the plugin reads back.
      assert.deepEqual(parsePoolDefinition('p', JSON.stringify([parsed.definition])), [parsed.range]);
    });
  }
});

describe('parseRangeArgument: refused with a message naming the argument, the field and the value', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['an empty argument', '', /^--range : the subnet is missing/],
    ['no subnet before the addresses', ',10.0.0.1', /the subnet is missing/],
    ['five fields', '10.0.20.0/23,,,,10.0.20.1', /got 5 comma-separated fields/],
    ['a subnet with host bits', '10.0.20.1/23', /subnet "10\.0\.20\.1\/23" is not valid: host bits are set: did you mean 10\.0\.20\.0\/23\?/],
    ['no prefix length', '10.0.20.0', /subnet "10\.0\.20\.0" is not valid: expected a subnet in CIDR notation/],
    ['a prefix too long', '10.0.20.0/33', /subnet "10\.0\.20\.0\/33" is not valid/],
    ['a start that is not an address', '10.0.20.0/23,ten', /rangeStart "ten" is not an IP address/],
    ['a gateway of the other family', '10.0.20.0/23,,,fd00::1', /gateway fd00::1 is IPv6 but subnet 10\.0\.20\.0\/23 is IPv4/],
    ['an IPv4 end in an IPv6 subnet', 'fd00::/64,,10.0.0.1', /rangeEnd 10\.0\.0\.1 is IPv4 but subnet fd00::\/64 is IPv6/],
    ['a start outside the subnet', '10.0.20.0/23,10.0.30.1', /rangeStart 10\.0\.30\.1 is not an address of subnet 10\.0\.20\.0\/23/],
    ['a gateway outside the subnet', '10.0.20.0/23,,,10.0.22.1', /gateway 10\.0\.22\.1 is not an address of subnet/],
    ['start after end', '10.0.20.0/23,10.0.21.5,10.0.21.1', /rangeStart 10\.0\.21\.5 comes after rangeEnd 10\.0\.21\.1/],
  ];
  for (const [label, argument, message] of cases) {
    test(label, () =>
      assert.throws(
        () => parseRangeArgument(argument),
        (error: unknown) => error instanceof UsageError && error.message.startsWith(`--range ${argument}: `) && message.test(error.message),
      ),
    );
  }
});

describe('parseRangeArguments', () => {
  test('no --range at all is a usage error', () => assert.throws(() => parseRangeArguments([]), /needs at least one --range/));
  test('two ranges of one pool may share a subnet when their spans do not meet', () => {
    const parsed = parseRangeArguments(['10.0.0.0/24,10.0.0.10,10.0.0.19', '10.0.0.0/24,10.0.0.20,10.0.0.29']);
    assert.equal(parsed.length, 2);
  });
  test('overlapping spans are refused, naming both arguments', () =>
    assert.throws(
      () => parseRangeArguments(['10.0.20.0/23', '10.0.21.0/24']),
      (error: unknown) => error instanceof UsageError && /--range 10\.0\.20\.0\/23 and --range 10\.0\.21\.0\/24 overlap/.test(error.message),
    ));
  test('an IPv4 and an IPv6 range never overlap', () => assert.equal(parseRangeArguments(['10.0.0.0/24', 'fd00::/64']).length, 2));
});

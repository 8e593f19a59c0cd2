// The command line of consul-ipam: parsing, Consul settings from options and environment, error reports.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cliWording, OperationFailure, reportLine, reportOf, UsageError } from '../../src/cli/cli-errors';
import { connectionOptions, givenOptions, parseCommandLine } from '../../src/cli/options';
import { CniError, ErrorCode } from '../../src/cni/errors';

describe('parseCommandLine', () => {
  test('options may come before, between and after the words; --consul and --range repeat', () => {
    const { words, values } = parseCommandLine(['--consul', 'http://a:8500', 'pool', '--json', 'set', 'web', '--range', '10.0.0.0/24', '--consul', 'http://b:8500', '--range', 'fd00::/64']);
    assert.deepEqual(words, ['pool', 'set', 'web']);
    assert.deepEqual(values.consul, ['http://a:8500', 'http://b:8500']);
    assert.deepEqual(values.range, ['10.0.0.0/24', 'fd00::/64']);
    assert.equal(values.json, true);
    assert.deepEqual(givenOptions(values).sort(), ['consul', 'json', 'range']);
  });
  test('-h is --help', () => assert.equal(parseCommandLine(['pool', 'list', '-h']).values.help, true));
  const refused: Array<[string, string[], RegExp]> = [
    ['an unknown option, without parseArgs\' advice', ['--frob'], /^unknown option --frob$/],
    ['a missing value', ['pool', 'set', 'web', '--range'], /^option --range <value> argument missing$/],
    ['a value for a switch', ['--json=yes'], /^option --json does not take an argument$/],
  ];
  for (const [label, argv, message] of refused) {
    test(`${label} is a usage error`, () => assert.throws(() => parseCommandLine(argv), (e: unknown) => e instanceof UsageError && message.test(e.message)));
  }
});

describe('connectionOptions', () => {
  test('without options or environment: the local agent, the plugin\'s timeouts', () => {
    const options = connectionOptions({}, {});
    assert.deepEqual(options, { servers: ['http://127.0.0.1:8500'], connectTimeoutMs: 1000, requestTimeoutMs: 5000 });
  });
  test('CONSUL_HTTP_ADDR without a scheme is http, or https with CONSUL_HTTP_SSL', () => {
    assert.deepEqual(connectionOptions({}, { CONSUL_HTTP_ADDR: '10.1.2.3:8500' }).servers, ['http://10.1.2.3:8500']);
    assert.deepEqual(connectionOptions({}, { CONSUL_HTTP_ADDR: '10.1.2.3:8501', CONSUL_HTTP_SSL: 'true' }).servers, ['https://10.1.2.3:8501']);
  });
  test('--consul beats CONSUL_HTTP_ADDR and keeps its order', () => {
    const options = connectionOptions({ consul: ['http://b:8500/', 'https://a:8501'] }, { CONSUL_HTTP_ADDR: 'http://env:8500' });
    assert.deepEqual(options.servers, ['http://b:8500', 'https://a:8501']);
  });
  test('the token: option, else environment; a token option hides an environment token file', () => {
    assert.equal(connectionOptions({ token: 'flag' }, { CONSUL_HTTP_TOKEN: 'env' }).token, 'flag');
    assert.equal(connectionOptions({}, { CONSUL_HTTP_TOKEN: 'env' }).token, 'env');
    const fromFile = connectionOptions({ 'token-file': '/run/t' }, { CONSUL_HTTP_TOKEN: 'env' });
    assert.deepEqual([fromFile.token, fromFile.tokenFile], [undefined, '/run/t']);
    const envFile = connectionOptions({}, { CONSUL_HTTP_TOKEN_FILE: '/env/t' });
    assert.deepEqual([envFile.token, envFile.tokenFile], [undefined, '/env/t']);
    assert.equal(connectionOptions({ token: 'flag' }, { CONSUL_HTTP_TOKEN_FILE: '/env/t' }).tokenFile, undefined);
  });
  test('TLS files: options, else Consul\'s variables', () => {
    const options = connectionOptions({ 'ca-file': '/ca.pem' }, { CONSUL_CLIENT_CERT: '/c.pem', CONSUL_CLIENT_KEY: '/k.pem' });
    assert.deepEqual([options.caFile, options.certFile, options.keyFile], ['/ca.pem', '/c.pem', '/k.pem']);
  });
  const refused: Array<[string, Parameters<typeof connectionOptions>, RegExp]> = [
    ['a non-http URL', [{ consul: ['ftp://x'] }, {}], /--consul "ftp:\/\/x" is not a Consul HTTP address/],
    ['credentials in the URL', [{ consul: ['http://u:p@x'] }, {}], /expected no query, fragment or credentials/],
    ['a bad CONSUL_HTTP_ADDR, named as such', [{}, { CONSUL_HTTP_ADDR: 'unix:///run/consul.sock' }], /^CONSUL_HTTP_ADDR "unix:\/\/\/run\/consul\.sock"/],
    ['--token with --token-file', [{ token: 'a', 'token-file': 'b' }, {}], /--token and --token-file/],
    ['a certificate without its key', [{ 'cert-file': '/c.pem' }, {}], /needs both --cert-file and --key-file; only --cert-file/],
  ];
  for (const [label, args, message] of refused) {
    test(`${label} is a usage error`, () => assert.throws(() => connectionOptions(...args), (e: unknown) => e instanceof UsageError && message.test(e.message)));
  }
});

describe('reports', () => {
  test('the plugin\'s field names become the CLI\'s options', () => {
    assert.equal(cliWording('permission denied (check ipam.consul_token)'), 'permission denied (check --token)');
    assert.equal(cliWording('cannot read ipam.consul_token_file /x and ipam.consul_ca_file /y'), 'cannot read --token-file /x and --ca-file /y');
  });
  test('usage errors exit 2, operational failures 1, each with a reason', () => {
    assert.deepEqual(reportOf(new UsageError('bad')), { exitCode: 2, reason: 'usage', message: 'bad' });
    assert.deepEqual(reportOf(new OperationFailure('conflict', 'changed', 'run again')), { exitCode: 1, reason: 'conflict', message: 'changed', details: 'run again' });
    const denied = reportOf(new CniError(ErrorCode.PermissionDenied, 'Consul denied a read of ipam/web: permission denied (check ipam.consul_token)', 'http://x answered 403'));
    assert.deepEqual(denied, { exitCode: 1, reason: 'permission-denied', message: 'Consul denied a read of ipam/web: permission denied (check --token)', details: 'http://x answered 403' });
    assert.equal(reportOf(new CniError(ErrorCode.TryAgainLater, 'no Consul server could be reached')).reason, 'unreachable');
  });
  test('an unforeseen error is reported by its message, never its stack', () => {
    const report = reportOf(new TypeError('x is undefined'));
    assert.deepEqual(report, { exitCode: 1, reason: 'unexpected', message: 'unexpected failure: x is undefined' });
    assert.doesNotMatch(reportLine(report), /\n|at .*\.ts/);
  });
  test('the stderr line is one line, details in parentheses', () =>
    assert.equal(reportLine({ exitCode: 1, reason: 'consul-error', message: 'refused\nbadly', details: 'a\nb' }), 'consul-ipam: refused badly (a b)'));
});

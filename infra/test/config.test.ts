import assert from 'node:assert/strict';
import { test } from 'node:test';
import { distinctSecrets, distinctStreams, expandEnv, parseConfig } from '../lib/config.ts';
import { ORDERS_CONFIG } from './fixtures.ts';

test('reads slots through merge keys, with streams and secrets', () => {
  const c = parseConfig(ORDERS_CONFIG, 'configs.yml', {});
  assert.deepEqual(
    c.slots.map((s) => [s.name, s.stream, s.secret]),
    [
      ['orders_slot', 'orders-cdc', 'prod/shop/cdc'],
      ['payments_slot', 'orders-cdc', undefined],
    ],
  );
  assert.deepEqual(distinctStreams(c.slots), ['orders-cdc']);
  assert.deepEqual(distinctSecrets(c.slots), ['prod/shop/cdc']);
  assert.equal(c.shutdownTimeoutSecs, 25);
});

test('expands ${VAR} and ${VAR:-default} like the streamer, and names a missing variable', () => {
  assert.equal(expandEnv('cdc-${ENV:-dev}', {}, 'x'), 'cdc-dev');
  assert.equal(expandEnv('cdc-${ENV:-dev}', { ENV: 'prod' }, 'x'), 'cdc-prod');
  assert.throws(() => expandEnv('${NOPE}', {}, 'configs.yml: slot `a`'), /configs.yml: slot `a`: environment variable NOPE is not set/);
});

test('the repo configs.yml parses', async () => {
  const { loadConfig } = await import('../lib/config.ts');
  const c = loadConfig(new URL('../../configs.yml', import.meta.url).pathname, {});
  assert.ok(c.slots.length >= 1);
});

test('rejects a slot without kns_stream and duplicate slots', () => {
  assert.throws(() => parseConfig('replication_slots:\n  - a: {host: h}\n', 'c.yml', {}), /c.yml: replication slot `a`, key `kns_stream`: required/);
  assert.throws(() => parseConfig('databases: []\n', 'c.yml', {}), /replication_slots must be a non-empty list/);
  assert.throws(
    () => parseConfig('replication_slots:\n  - a: {kns_stream: s}\n  - a: {kns_stream: t}\n', 'c.yml', {}),
    /slot names must be unique/,
  );
});

test('a slot also writes the streams its tables: entries route to, each once', () => {
  const c = parseConfig(
    'replication_slots:\n  - a:\n      kns_stream: main\n      tables:\n        - match: public.orders\n          stream: ${P:-}orders\n' +
      '        - match: public.audit_*\n          skip: true\n        - match: sales.*\n          stream: ${P:-}orders\n        - match: x.y\n          stream: main\n',
    'c.yml',
    { P: 'prod-' },
  );
  assert.deepEqual(c.slots[0]!.routes, [
    { stream: 'prod-orders', template: '${P:-}orders' },
    { stream: 'main', template: 'main' },
  ]);
  assert.deepEqual(distinctStreams(c.slots), ['main', 'prod-orders']);
});

/**
 * The container image's build context, checked without Docker: what the Dockerfile
 * COPYs exists, what must stay out of the context is ignored, and the runtime stage
 * has the settings ECS relies on.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

const root = new URL('../../', import.meta.url).pathname;
const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
// Continuation lines joined, comments dropped.
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

function globExists(pattern: string): boolean {
  if (!pattern.includes('*')) return existsSync(join(root, pattern));
  const re = new RegExp('^' + pattern.replace(/\./g, '\\.').replace(/\*/g, '.*') + '$');
  return readdirSync(root).some((f) => re.test(f));
}

test('every file the Dockerfile COPYs from the context exists', () => {
  const copies = instructions.filter((l) => /^COPY\s/i.test(l) && !/--from=/i.test(l));
  assert.ok(copies.length >= 3, 'expected COPY lines');
  for (const line of copies) {
    const args = line.split(/\s+/).slice(1).filter((a) => !a.startsWith('--'));
    for (const src of args.slice(0, -1)) {
      assert.ok(globExists(src.replace(/^\.\//, '')), `COPY source ${src} does not exist`);
    }
  }
});

test('.dockerignore keeps build output and tools out of the context, but not what is copied', () => {
  const ignored = readFileSync(join(root, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const dir of ['target/', '.tools/', 'node_modules/', 'cdk.out/']) {
    assert.ok(ignored.includes(dir), `.dockerignore lacks ${dir}`);
  }
  for (const needed of ['src/', 'Cargo.toml', 'Cargo.lock', 'configs.yml']) {
    assert.ok(!ignored.some((p) => p === needed || p === needed.replace(/\/$/, '')), `.dockerignore must not exclude ${needed}`);
  }
});

test('multi-stage build with the runtime settings ECS relies on', () => {
  const froms = instructions.filter((l) => /^FROM\s/i.test(l));
  assert.equal(froms.length, 2, 'a builder stage and a runtime stage');
  const runtime = instructions.slice(instructions.indexOf(froms[1]!));
  const has = (re: RegExp) => runtime.some((l) => re.test(l));
  assert.ok(has(/ca-certificates/), 'ca-certificates');
  assert.ok(has(/truststore\.pki\.rds\.amazonaws\.com\/global\/global-bundle\.pem.*|-o \/etc\/ssl\/certs\/rds-global-bundle\.pem/), 'RDS CA bundle');
  assert.ok(has(/rds-global-bundle\.pem/), 'RDS CA bundle path');
  assert.ok(has(/^USER\s+(?!root|0\b)/), 'a non-root USER');
  assert.ok(has(/^HEALTHCHECK .*\/healthz/), 'HEALTHCHECK on /healthz');
  assert.ok(has(/^STOPSIGNAL SIGTERM$/), 'STOPSIGNAL SIGTERM');
  assert.ok(has(/^ENTRYPOINT \["pg-cdc-to-kinesis", "run", "--log-format", "json"\]$/), 'entrypoint');
});

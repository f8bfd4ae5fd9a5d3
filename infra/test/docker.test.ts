/**
 * The container image's build context, checked without Docker: what the Dockerfile
 * COPYs exists, what must stay out of the context is ignored, and the runtime stage
 * has the settings ECS relies on.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { App, DockerIgnoreStrategy, Stack } from 'aws-cdk-lib';
import { DockerImageAsset } from 'aws-cdk-lib/aws-ecr-assets';

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

const dockerignore = readFileSync(join(root, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

test('.dockerignore lets in only what the image is built from', () => {
  const ignore = new DockerIgnoreStrategy(root, dockerignore);
  const kept = (rel: string) => !ignore.ignores(join(root, rel));
  for (const needed of ['Cargo.toml', 'Cargo.lock', 'src/lib.rs', 'src/bin/pg-cdc-to-kinesis.rs', 'configs.yml', 'certs/rds-global-bundle.pem']) {
    assert.ok(kept(needed), `.dockerignore must let ${needed} in`);
  }
  for (const out of ['target/release/x', '.tools/venv', 'node_modules/x', 'cdk.out/x', '.git/HEAD', 'infra/bin/app.ts', 'cdk.json', 'package.json', 'package-lock.json', '.ci/run', 'scripts/test', 'tests/main.rs', 'README.md', 'RUNBOOK.md', 'certs/README.md']) {
    assert.ok(!kept(out), `.dockerignore must keep ${out} out`);
  }
});

/** The image asset's hash for a context laid out like the repo, with the repo's Dockerfile and .dockerignore. */
function imageHash(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'pg-cdc-image-'));
  for (const f of ['Dockerfile', '.dockerignore']) copyFileSync(join(root, f), join(dir, f));
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  return new DockerImageAsset(new Stack(new App()), 'Image', { directory: dir }).assetHash;
}

test('infra-only edits keep the image asset hash; source, config and CA edits change it', () => {
  const base: Record<string, string> = {
    'Cargo.toml': '[package]\n',
    'Cargo.lock': '# lock\n',
    'src/lib.rs': '//! lib\n',
    'configs.yml': 'replication_slots: []\n',
    'certs/rds-global-bundle.pem': 'pem\n',
    'cdk.json': '{"app": "x"}\n',
    'package.json': '{}\n',
    'package-lock.json': '{}\n',
    'infra/lib/x.ts': 'export {};\n',
    '.ci/run': '#!/bin/sh\n',
    'README.md': '# readme\n',
  };
  const hash = imageHash(base);
  for (const rel of ['cdk.json', 'package.json', 'package-lock.json', 'infra/lib/x.ts', '.ci/run', 'README.md']) {
    assert.equal(imageHash({ ...base, [rel]: base[rel] + '// edited\n' }), hash, `editing ${rel} changed the image hash`);
  }
  assert.equal(imageHash({ ...base, 'RUNBOOK.md': 'new\n', 'infra/test/y.ts': 'new\n' }), hash, 'new infra files changed the hash');
  for (const rel of ['src/lib.rs', 'Cargo.lock', 'configs.yml', 'certs/rds-global-bundle.pem']) {
    assert.notEqual(imageHash({ ...base, [rel]: base[rel] + '// edited\n' }), hash, `editing ${rel} must change the image hash`);
  }
});

test('the builder caches dependencies in a layer before the sources are copied', () => {
  const builder = instructions.slice(0, instructions.findIndex((l, i) => i > 0 && /^FROM\s/i.test(l)));
  const copyManifest = builder.findIndex((l) => /^COPY Cargo\.toml Cargo\.lock/.test(l));
  const depsBuild = builder.findIndex((l) => /^RUN .*cargo build --release --locked/.test(l));
  const copySrc = builder.findIndex((l) => /^COPY src /.test(l));
  assert.ok(copyManifest >= 0 && depsBuild > copyManifest && copySrc > depsBuild, builder.join('\n'));
  assert.match(builder[copySrc + 1]!, /touch src\/lib\.rs .*cargo build --release --locked/);
});

test('multi-stage build with the runtime settings ECS relies on', () => {
  const froms = instructions.filter((l) => /^FROM\s/i.test(l));
  assert.equal(froms.length, 2, 'a builder stage and a runtime stage');
  const runtime = instructions.slice(instructions.indexOf(froms[1]!));
  const has = (re: RegExp) => runtime.some((l) => re.test(l));
  assert.ok(has(/ca-certificates/), 'ca-certificates');
  assert.ok(has(/^COPY certs\/rds-global-bundle\.pem \/opt\/pg-cdc-to-kinesis\/rds-global-bundle\.pem$/), 'RDS CA bundle from the repository');
  assert.ok(has(/sha256sum -c/), 'RDS CA bundle checked against its pin');
  assert.ok(has(/ln -s \/opt\/pg-cdc-to-kinesis\/rds-global-bundle\.pem \/etc\/ssl\/certs\/rds-global-bundle\.pem/), 'the old path still works');
  assert.ok(has(/^USER\s+(?!root|0\b)/), 'a non-root USER');
  assert.ok(has(/^HEALTHCHECK .*\/healthz/), 'HEALTHCHECK on /healthz');
  assert.ok(has(/^STOPSIGNAL SIGTERM$/), 'STOPSIGNAL SIGTERM');
  assert.ok(has(/^ENTRYPOINT \["pg-cdc-to-kinesis", "run", "--log-format", "json"\]$/), 'entrypoint');
});

/**
 * Test fixtures: a two-service app built from inline configs.yml text, with the image
 * from a registry and a stub Lambda directory, so that nothing is built or bundled.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Aspects } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { parseConfig } from '../lib/config.ts';
import { PgCdcStack, type PgCdcStackProps } from '../lib/pg-cdc-stack.ts';

export const ORDERS_CONFIG = `
databases:
  - shop: &shop
      host: db.example.internal
      user: cdc
      password: \${PGPASSWORD:-x}
      db_name: shop
replication_slots:
  - orders_slot:
      <<: *shop
      kns_stream: orders-cdc
      secret: prod/shop/cdc
  - payments_slot:
      <<: *shop
      kns_stream: orders-cdc
shutdown_timeout_secs: 25
`;

export const CRM_CONFIG = `
replication_slots:
  - customers_slot:
      host: crm.example.internal
      user: cdc
      db_name: crm
      kns_stream: customers-cdc
      secret: arn:aws:secretsmanager:eu-west-1:123456789012:secret:crm-AbCdEf
`;

export function lambdaDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pg-cdc-admin-'));
  writeFileSync(join(dir, 'bootstrap'), '#!/bin/sh\n', { mode: 0o755 });
  return dir;
}

export function buildStack(overrides: Partial<PgCdcStackProps> = {}, nag = true): PgCdcStack {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new PgCdcStack(app, 'TestStack', {
    env: { account: '123456789012', region: 'eu-west-1' },
    services: [
      { name: 'orders', configFile: 'configs.yml', config: parseConfig(ORDERS_CONFIG, 'configs.yml', {}) },
      { name: 'crm', configFile: 'configs-crm.yml', config: parseConfig(CRM_CONFIG, 'configs-crm.yml', {}) },
    ],
    image: { uri: 'public.ecr.aws/example/pg-cdc-to-kinesis:test' },
    lambdaCodeDir: lambdaDir(),
    ...overrides,
  });
  if (nag) Aspects.of(stack).add(new AwsSolutionsChecks());
  return stack;
}

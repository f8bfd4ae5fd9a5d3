/**
 * The CDK app: turns context and configs.yml into the stack's props. No resources here.
 *
 * Context (cdk.json or `-c key=value`):
 * - `configFiles`: comma-separated configs files in the repo root, one streamer service
 *   each (default `configs.yml`); a slot may appear in only one.
 * - `stackName` (default `PgCdcToKinesis`), `account`/`region` (default the CLI's).
 * - `vpcId`, `subnetIds`, `availabilityZones` (comma-separated), `securityGroupId`: an
 *   existing network; unset creates a VPC (in `availabilityZones` when given, so that
 *   synth needs no lookup).
 * - `shardCount`: provisioned shards per stream (default on-demand).
 * - `alarmEmail`: subscribe an address to the alarm topic.
 * - `metricsNamespace` (default `PgCdcToKinesis`), `logRetentionDays` (default 30).
 * - `imageUri`: use a pushed image instead of building the Dockerfile.
 * - `lambdaCodeDir`: the admin Lambda's `bootstrap` directory (default
 *   `target/lambda/pg-cdc-admin`, written by `scripts/build-lambda`).
 * - `environment`: JSON object of environment variables for `${VAR}` in configs.yml.
 * - `nag` (default true): run cdk-nag's AwsSolutions checks.
 */
import { existsSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, Aspects } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import { AwsSolutionsChecks } from 'cdk-nag';
import { loadConfig } from '../lib/config.ts';
import { PgCdcStack, type ServiceSpec } from '../lib/pg-cdc-stack.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const app = new App();
const ctx = (key: string): string | undefined => {
  const v: unknown = app.node.tryGetContext(key);
  return v === undefined || v === null || v === '' ? undefined : String(v);
};
const list = (key: string): string[] => (ctx(key) ?? '').split(',').map((s) => s.trim()).filter(Boolean);

const services: ServiceSpec[] = (list('configFiles').length ? list('configFiles') : ['configs.yml']).map((file) => {
  const path = resolve(repoRoot, file);
  if (dirname(path) !== repoRoot) throw new Error(`configFiles: ${file} must be a file in the repo root (the Dockerfile copies configs*.yml from there)`);
  const name = basename(file).replace(/\.ya?ml$/, '').replace(/[^A-Za-z0-9-]/g, '-');
  return { name, configFile: basename(file), config: loadConfig(path) };
});

const lambdaCodeDir = resolve(repoRoot, ctx('lambdaCodeDir') ?? 'target/lambda/pg-cdc-admin');
if (!existsSync(join(lambdaCodeDir, 'bootstrap'))) {
  throw new Error(`${lambdaCodeDir}/bootstrap is missing: run scripts/build-lambda first (or set -c lambdaCodeDir=DIR)`);
}
const vpcId = ctx('vpcId');
const shardCount = ctx('shardCount');
const retention = ctx('logRetentionDays');
const environment = ctx('environment');
const imageUri = ctx('imageUri');
const account = ctx('account') ?? process.env['CDK_DEFAULT_ACCOUNT'];
const region = ctx('region') ?? process.env['CDK_DEFAULT_REGION'];

// Given zones fill CDK's lookup cache, so a new VPC in a concrete account synthesizes
// without AWS credentials (tests, CI).
if (!vpcId && account && region && list('availabilityZones').length) {
  app.node.setContext(`availability-zones:account=${account}:region=${region}`, list('availabilityZones'));
}

const stack = new PgCdcStack(app, ctx('stackName') ?? 'PgCdcToKinesis', {
  ...(account || region ? { env: { ...(account ? { account } : {}), ...(region ? { region } : {}) } } : {}),
  description: 'pg-cdc-to-kinesis: PostgreSQL logical replication (wal2json) to Kinesis Data Streams',
  services,
  image: imageUri ? { uri: imageUri } : { directory: repoRoot },
  lambdaCodeDir,
  ...(vpcId
    ? {
        network: {
          vpcId,
          subnetIds: list('subnetIds'),
          availabilityZones: list('availabilityZones'),
          ...(ctx('securityGroupId') ? { securityGroupId: ctx('securityGroupId')! } : {}),
        },
      }
    : list('availabilityZones').length
      ? { availabilityZones: list('availabilityZones') }
      : {}),
  ...(shardCount ? { shardCount: Number(shardCount) } : {}),
  ...(ctx('alarmEmail') ? { alarmEmail: ctx('alarmEmail')! } : {}),
  ...(ctx('metricsNamespace') ? { metricsNamespace: ctx('metricsNamespace')! } : {}),
  ...(retention ? { logRetention: Number(retention) as logs.RetentionDays } : {}),
  ...(environment ? { environment: JSON.parse(environment) as Record<string, string> } : {}),
});

if (ctx('nag') !== 'false') Aspects.of(stack).add(new AwsSolutionsChecks({ verbose: true }));

/**
 * The CDK app: turns context and configs.yml into the stack's props. No resources here.
 *
 * Context (cdk.json or `-c key=value`):
 * - `configFiles`: comma-separated configs files in the repo root, one streamer service
 *   each (default `configs.yml`); a slot may appear in only one.
 * - `stackName` (default `PgCdcToKinesis`), `account`/`region` (default the CLI's).
 * - `architecture`: `arm64` (default, Graviton) or `x86_64`, for the task and the Lambda.
 * - `vpcId`, `subnetIds`, `availabilityZones`, `routeTableIds` (comma-separated),
 *   `securityGroupId`: an existing network; unset creates a VPC (in `availabilityZones`
 *   when given, so that synth needs no lookup).
 * - `vpcEndpoints=true`: VPC endpoints for private subnets without NAT (an existing VPC
 *   then needs `routeTableIds` for the S3 gateway endpoint).
 * - `namePrefix`: prefix of the stream names (configs.yml writes
 *   `kns_stream: ${PG_CDC_STREAM_PREFIX:-}orders`); `checkpointPrefix` (default
 *   `/pg-cdc-to-kinesis/<stackName>`).
 * - `shardCount`: provisioned shards per stream (default on-demand).
 * - `dbResourceId` + `dbUser`: grant `rds-db:connect` for `iam_auth: true`;
 *   `secretKmsKeyArns` (comma-separated): grant `kms:Decrypt` for secrets under them.
 * - `alarmEmail`, `runbookUrl` (base URL of RUNBOOK.md in the alarm descriptions),
 *   `retainedWalAlarmBytes` (default 10 GiB), `dbInstanceIdentifier` (comma-separated:
 *   RDS-side alarms).
 * - `metricsNamespace`: only as a check; configs.yml's `metrics_namespace` decides.
 * - `logRetentionDays` (default 30), `tags` (a JSON object, on every resource).
 * - `imageUri`: use a pushed image instead of building the Dockerfile.
 * - `lambdaCodeDir`: the admin Lambda's `bootstrap` directory (default
 *   `target/lambda/pg-cdc-admin`, written by `scripts/build-lambda`); without a build,
 *   synth and diff use a placeholder and deploy refuses.
 * - `environment`: JSON object of environment variables for `${VAR}` in configs.yml.
 * - `oversizeBucketName`: an existing bucket for `oversize: s3` (default: the stack
 *   creates one when a slot uses it); `oversizeExpirationDays` (default 30) for a
 *   created one. configs.yml writes `oversize_bucket: ${PG_CDC_OVERSIZE_BUCKET}`.
 * - `nag` (default true): run cdk-nag's AwsSolutions checks.
 */
import { existsSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, Aspects } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import { AwsSolutionsChecks } from 'cdk-nag';
import { loadConfig } from '../lib/config.ts';
import type { CpuArchitecture } from '../lib/lambda-code.ts';
import { ENV_STREAM_PREFIX, PgCdcStack, type ServiceSpec } from '../lib/pg-cdc-stack.ts';
import { defaultCheckpointPrefix, ENV_CHECKPOINT_PREFIX } from '../lib/permissions.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const app = new App();
const ctx = (key: string): string | undefined => {
  const v: unknown = app.node.tryGetContext(key);
  return v === undefined || v === null || v === '' ? undefined : typeof v === 'object' ? JSON.stringify(v) : String(v);
};
const list = (key: string): string[] => (ctx(key) ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const json = (key: string): Record<string, string> | undefined => {
  const text = ctx(key);
  if (text === undefined) return undefined;
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(`-c ${key}: expected a JSON object like '{"team":"data"}', got ${text}`);
  }
  return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, String(v)]));
};

const stackName = ctx('stackName') ?? 'PgCdcToKinesis';
const architecture = (ctx('architecture') ?? 'arm64') as CpuArchitecture;
if (architecture !== 'arm64' && architecture !== 'x86_64') {
  throw new Error(`-c architecture=${String(architecture)}: use arm64 (the default) or x86_64`);
}
const namePrefix = ctx('namePrefix');
const checkpointPrefix = ctx('checkpointPrefix') ?? defaultCheckpointPrefix(stackName);
const environment = json('environment');
// configs.yml's ${VAR} as the streamer will expand it: the stack's environment, not the shell's.
const runtimeEnv = {
  ...(environment ?? {}),
  [ENV_CHECKPOINT_PREFIX]: checkpointPrefix,
  ...(namePrefix ? { [ENV_STREAM_PREFIX]: namePrefix } : {}),
};

const services: ServiceSpec[] = (list('configFiles').length ? list('configFiles') : ['configs.yml']).map((file) => {
  const path = resolve(repoRoot, file);
  if (dirname(path) !== repoRoot) throw new Error(`configFiles: ${file} must be a file in the repo root (the Dockerfile copies configs*.yml from there)`);
  const name = basename(file).replace(/\.ya?ml$/, '').replace(/[^A-Za-z0-9-]/g, '-');
  return { name, configFile: basename(file), config: loadConfig(path, runtimeEnv) };
});

const explicitLambdaDir = ctx('lambdaCodeDir');
const lambdaCodeDir = resolve(repoRoot, explicitLambdaDir ?? 'target/lambda/pg-cdc-admin');
const lambdaBuilt = existsSync(join(lambdaCodeDir, 'bootstrap'));
if (explicitLambdaDir && !lambdaBuilt) {
  throw new Error(`-c lambdaCodeDir=${explicitLambdaDir}: ${lambdaCodeDir}/bootstrap is missing`);
}
const vpcId = ctx('vpcId');
const shardCount = ctx('shardCount');
const retention = ctx('logRetentionDays');
const retainedWal = ctx('retainedWalAlarmBytes');
const imageUri = ctx('imageUri');
const account = ctx('account') ?? process.env['CDK_DEFAULT_ACCOUNT'];
const region = ctx('region') ?? process.env['CDK_DEFAULT_REGION'];
const dbResourceId = ctx('dbResourceId');
const dbUser = ctx('dbUser');
if ((dbResourceId === undefined) !== (dbUser === undefined)) {
  throw new Error('-c dbResourceId and -c dbUser go together: the rds-db:connect grant names both');
}
const tags = json('tags');
const oversizeBucketName = ctx('oversizeBucketName');
const oversizeExpirationDays = ctx('oversizeExpirationDays');

// Given zones fill CDK's lookup cache, so a new VPC in a concrete account synthesizes
// without AWS credentials (tests, CI).
if (!vpcId && account && region && list('availabilityZones').length) {
  app.node.setContext(`availability-zones:account=${account}:region=${region}`, list('availabilityZones'));
}

const stack = new PgCdcStack(app, stackName, {
  ...(account || region ? { env: { ...(account ? { account } : {}), ...(region ? { region } : {}) } } : {}),
  description: 'pg-cdc-to-kinesis: PostgreSQL logical replication (wal2json) to Kinesis Data Streams',
  services,
  image: imageUri ? { uri: imageUri } : { directory: repoRoot },
  ...(lambdaBuilt ? { lambdaCodeDir } : {}),
  architecture,
  checkpointPrefix,
  ...(vpcId
    ? {
        network: {
          vpcId,
          subnetIds: list('subnetIds'),
          availabilityZones: list('availabilityZones'),
          ...(list('routeTableIds').length ? { routeTableIds: list('routeTableIds') } : {}),
          ...(ctx('securityGroupId') ? { securityGroupId: ctx('securityGroupId')! } : {}),
        },
      }
    : list('availabilityZones').length
      ? { availabilityZones: list('availabilityZones') }
      : {}),
  ...(ctx('vpcEndpoints') === 'true' ? { vpcEndpoints: true } : {}),
  ...(namePrefix ? { namePrefix } : {}),
  ...(shardCount ? { shardCount: Number(shardCount) } : {}),
  ...(dbResourceId && dbUser ? { iamDbUser: { dbResourceId, dbUser } } : {}),
  ...(list('secretKmsKeyArns').length ? { secretKmsKeyArns: list('secretKmsKeyArns') } : {}),
  ...(list('dbInstanceIdentifier').length ? { dbInstanceIdentifiers: list('dbInstanceIdentifier') } : {}),
  ...(ctx('alarmEmail') ? { alarmEmail: ctx('alarmEmail')! } : {}),
  ...(ctx('runbookUrl') ? { runbookUrl: ctx('runbookUrl')! } : {}),
  ...(retainedWal ? { thresholds: { retainedWalBytes: Number(retainedWal) } } : {}),
  ...(ctx('metricsNamespace') ? { metricsNamespace: ctx('metricsNamespace')! } : {}),
  ...(retention ? { logRetention: Number(retention) as logs.RetentionDays } : {}),
  ...(environment ? { environment } : {}),
  ...(tags ? { tags } : {}),
  ...(oversizeBucketName ? { oversizeBucketName } : {}),
  ...(oversizeExpirationDays ? { oversizeExpirationDays: Number(oversizeExpirationDays) } : {}),
});

if (ctx('nag') !== 'false') Aspects.of(stack).add(new AwsSolutionsChecks({ verbose: true }));

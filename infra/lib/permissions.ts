/**
 * The IAM statements of the streamer and the admin Lambda, in one place so that what
 * each may do reads as a list and tests can compare it statement by statement.
 *
 * Owns least privilege: Kinesis on the configured streams only, SSM under the stack's
 * checkpoint prefix (and the explicitly configured parameters) only, Secrets Manager on
 * the configured secrets only, KMS on the given keys through Secrets Manager only, and
 * `rds-db:connect` as the given user only. No statement has resource `*`: metrics are
 * EMF lines in the logs, so no `cloudwatch:PutMetricData`.
 */
import * as iam from 'aws-cdk-lib/aws-iam';
import { ArnFormat, Stack } from 'aws-cdk-lib';

/** The streamer's own default prefix (`/pg-cdc-to-kinesis/<slot>/checkpoint`). */
export const CHECKPOINT_ROOT = '/pg-cdc-to-kinesis';

/**
 * The stack's checkpoint prefix, `/pg-cdc-to-kinesis/<stack>`: given to the streamer
 * and the Lambda as `PG_CDC_CHECKPOINT_PREFIX`, so each stack's checkpoints sit under
 * their own path and two stacks in one account cannot overwrite each other's.
 */
export function defaultCheckpointPrefix(stackName: string): string {
  return `${CHECKPOINT_ROOT}/${stackName}`;
}

/** The environment variable the streamer reads its default checkpoint prefix from. */
export const ENV_CHECKPOINT_PREFIX = 'PG_CDC_CHECKPOINT_PREFIX';

/** Where the checkpoints are: the stack's prefix, plus any `checkpoint_parameter` set explicitly. */
export interface CheckpointLocation {
  /** E.g. `/pg-cdc-to-kinesis/MyStack`; parameters `<prefix>/<slot>/checkpoint`. */
  readonly prefix: string;
  /** Explicit `checkpoint_parameter` values (full names). */
  readonly explicit: readonly string[];
}

/** `arn:...:parameter/<prefix>/*` and the explicit parameters' ARNs. */
export function checkpointParameterArns(stack: Stack, where: CheckpointLocation): string[] {
  const arn = (name: string) => stack.formatArn({ service: 'ssm', resource: 'parameter', resourceName: name.replace(/^\//, '') });
  return [arn(`${where.prefix.replace(/\/$/, '')}/*`), ...where.explicit.map(arn)];
}

/**
 * A secret's ARN from configs.yml's `secret:` (an ARN or a name). Secrets Manager
 * appends `-` and six random characters to a name in the ARN, hence `-??????`.
 */
export function secretArn(stack: Stack, secret: string): string {
  if (secret.startsWith('arn:')) return secret;
  return stack.formatArn({ service: 'secretsmanager', resource: 'secret', resourceName: `${secret}-??????`, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
}

/**
 * Kinesis: put records, read the stream's limits and list its shards (the sink paces
 * each shard and routes aggregates with them), on these streams only.
 */
export function kinesisStatement(streamArns: readonly string[]): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'PutRecordsOnConfiguredStreams',
    actions: ['kinesis:PutRecords', 'kinesis:DescribeStreamSummary', 'kinesis:ListShards'],
    resources: [...streamArns],
  });
}

/** SSM: the streamer reads and writes its checkpoints. */
export function checkpointReadWriteStatement(stack: Stack, where: CheckpointLocation): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'CheckpointsReadWrite',
    actions: ['ssm:GetParameter', 'ssm:PutParameter'],
    resources: checkpointParameterArns(stack, where),
  });
}

/** SSM: the admin Lambda reads checkpoints and its config parameter. */
export function adminParameterReadStatement(stack: Stack, where: CheckpointLocation, configParameterArn: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'CheckpointsAndConfigRead',
    actions: ['ssm:GetParameter'],
    resources: [...checkpointParameterArns(stack, where), configParameterArn],
  });
}

/** SSM: the admin Lambda's `drop` marks the dropped slot's checkpoint (never the config). */
export function adminCheckpointDropMarkStatement(stack: Stack, where: CheckpointLocation): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'CheckpointsDropMark',
    actions: ['ssm:PutParameter'],
    resources: checkpointParameterArns(stack, where),
  });
}

/** Secrets Manager: read the configured secrets; `undefined` when there are none. */
export function secretsStatement(stack: Stack, secrets: readonly string[]): iam.PolicyStatement | undefined {
  if (secrets.length === 0) return undefined;
  return new iam.PolicyStatement({
    sid: 'ReadConfiguredSecrets',
    actions: ['secretsmanager:GetSecretValue'],
    resources: secrets.map((s) => secretArn(stack, s)),
  });
}

/** An RDS database user that signs in with IAM (`iam_auth: true`). */
export interface IamDbUser {
  /** The instance's or cluster's resource id (`db-ABC...` / `cluster-ABC...`), not its name. */
  readonly dbResourceId: string;
  /** The database user, e.g. `cdc`. */
  readonly dbUser: string;
}

/** RDS IAM authentication: `rds-db:connect` as exactly that user of exactly that database. */
export function rdsConnectStatement(stack: Stack, user: IamDbUser): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'RdsIamConnect',
    actions: ['rds-db:connect'],
    resources: [
      stack.formatArn({
        service: 'rds-db',
        resource: 'dbuser',
        resourceName: `${user.dbResourceId}/${user.dbUser}`,
        arnFormat: ArnFormat.COLON_RESOURCE_NAME,
      }),
    ],
  });
}

/**
 * KMS: decrypt the configured secrets when they are under customer-managed keys, and
 * only through Secrets Manager in this region (`kms:ViaService`).
 */
export function secretKeysStatement(stack: Stack, keyArns: readonly string[]): iam.PolicyStatement | undefined {
  if (keyArns.length === 0) return undefined;
  return new iam.PolicyStatement({
    sid: 'DecryptConfiguredSecrets',
    actions: ['kms:Decrypt'],
    resources: [...keyArns],
    conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${stack.region}.amazonaws.com` } },
  });
}

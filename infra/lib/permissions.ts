/**
 * The IAM statements of the streamer and the admin Lambda, in one place so that what
 * each may do reads as a list and tests can compare it statement by statement.
 *
 * Owns least privilege: Kinesis on the configured streams only, SSM under the
 * checkpoint prefix only, Secrets Manager on the configured secrets only, and
 * CloudWatch metrics in one namespace only. It never grants `*` on an action.
 */
import * as iam from 'aws-cdk-lib/aws-iam';
import { ArnFormat, Stack } from 'aws-cdk-lib';

/** Every checkpoint parameter lives under this path (`/pg-cdc-to-kinesis/<slot>/checkpoint`). */
export const CHECKPOINT_PREFIX = '/pg-cdc-to-kinesis';

/** `arn:...:parameter/pg-cdc-to-kinesis/*`. */
export function checkpointParametersArn(stack: Stack): string {
  return stack.formatArn({ service: 'ssm', resource: 'parameter', resourceName: `${CHECKPOINT_PREFIX.slice(1)}/*` });
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
export function checkpointReadWriteStatement(stack: Stack): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'CheckpointsReadWrite',
    actions: ['ssm:GetParameter', 'ssm:PutParameter'],
    resources: [checkpointParametersArn(stack)],
  });
}

/** SSM: the admin Lambda reads checkpoints and its config parameter. */
export function adminParameterReadStatement(stack: Stack, configParameterArn: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'CheckpointsAndConfigRead',
    actions: ['ssm:GetParameter'],
    resources: [checkpointParametersArn(stack), configParameterArn],
  });
}

/** SSM: the admin Lambda's `drop` marks the dropped slot's checkpoint (never the config). */
export function adminCheckpointDropMarkStatement(stack: Stack): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'CheckpointsDropMark',
    actions: ['ssm:PutParameter'],
    resources: [checkpointParametersArn(stack)],
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

/** CloudWatch: PutMetricData has no resource ARNs; the namespace condition confines it. */
export function putMetricDataStatement(namespace: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'PutMetricDataInNamespace',
    actions: ['cloudwatch:PutMetricData'],
    resources: ['*'],
    conditions: { StringEquals: { 'cloudwatch:namespace': namespace } },
  });
}

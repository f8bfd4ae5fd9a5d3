/**
 * The admin Lambda (`pg-cdc-admin`): `provision`, `health` and `drop` events, plus the
 * EventBridge rule that runs `health` every minute.
 *
 * Owns the function's runtime (`provided.al2023`, arm64 unless told otherwise, the
 * prebuilt `bootstrap` or a marked placeholder), its network placement (the streamer's
 * VPC and security group, so it reaches the same databases), the RDS CA bundle layer,
 * the SSM parameter that holds its copy of configs.yml, and its permissions. It never
 * writes Kinesis records; the only checkpoint it writes is the mark `drop` leaves on
 * the dropped slot's checkpoint. Its metrics are EMF lines in its log, so it needs no
 * CloudWatch permission.
 */
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import {
  adminCheckpointDropMarkStatement,
  adminParameterReadStatement,
  type CheckpointLocation,
  secretsStatement,
} from './permissions.ts';

/** Standard SSM parameters hold up to 4 KB; larger configs need the advanced tier. */
const STANDARD_PARAMETER_MAX_BYTES = 4096;

export interface AdminFunctionProps {
  /** Directory holding the Lambda's `bootstrap` (the build, or the placeholder). */
  readonly codeDir: string;
  readonly architecture: lambda.Architecture;
  /** Layers for the function (the RDS CA bundle). */
  readonly layers?: readonly lambda.ILayerVersion[];
  /** The whole configs.yml, stored in SSM for the function. */
  readonly configText: string;
  /** SSM parameter name for it, outside the checkpoint prefix. */
  readonly configParameterName: string;
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.SubnetSelection;
  readonly securityGroup: ec2.ISecurityGroup;
  /** `secret:` values of the slots (names or ARNs). */
  readonly secrets: readonly string[];
  /** Where the checkpoints are (read by `health`, marked by `drop`). */
  readonly checkpoints: CheckpointLocation;
  /** Further statements (RDS IAM sign-in, KMS keys of the secrets). */
  readonly extraStatements?: readonly iam.PolicyStatement[];
  /** CloudWatch namespace of the health metrics. */
  readonly metricsNamespace: string;
  /** Extra environment (e.g. `PGHOST` for `${PGHOST}` in configs.yml). */
  readonly environment?: Readonly<Record<string, string>>;
  /** Log retention (default one month). */
  readonly logRetention?: logs.RetentionDays;
  /** How often `health` runs (default every minute). */
  readonly healthSchedule?: Duration;
}

export class AdminFunction extends Construct {
  public readonly function: lambda.Function;
  public readonly healthRule: events.Rule;
  public readonly configParameter: ssm.StringParameter;
  public readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: AdminFunctionProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.configParameter = new ssm.StringParameter(this, 'Config', {
      parameterName: props.configParameterName,
      description: 'configs.yml for the pg-cdc-to-kinesis admin Lambda',
      stringValue: props.configText,
      tier:
        Buffer.byteLength(props.configText) > STANDARD_PARAMETER_MAX_BYTES
          ? ssm.ParameterTier.ADVANCED
          : ssm.ParameterTier.STANDARD,
    });
    const logGroup = (this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    }));
    this.function = new lambda.Function(this, 'Function', {
      description: 'pg-cdc-to-kinesis admin: {"action":"provision"|"health"|"drop"}',
      runtime: lambda.Runtime.PROVIDED_AL2023,
      architecture: props.architecture,
      handler: 'bootstrap',
      code: lambda.Code.fromAsset(props.codeDir),
      layers: [...(props.layers ?? [])],
      memorySize: 256,
      // Creating a slot waits for the transactions running at that moment.
      timeout: Duration.minutes(5),
      vpc: props.vpc,
      vpcSubnets: props.subnets,
      securityGroups: [props.securityGroup],
      logGroup,
      environment: {
        PG_CDC_CONFIG_SSM_PARAMETER: props.configParameterName,
        PG_CDC_METRICS_NAMESPACE: props.metricsNamespace,
        RUST_LOG: 'info',
        ...(props.environment ?? {}),
      },
    });
    this.function.addToRolePolicy(adminParameterReadStatement(stack, props.checkpoints, this.configParameter.parameterArn));
    this.function.addToRolePolicy(adminCheckpointDropMarkStatement(stack, props.checkpoints));
    const secrets = secretsStatement(stack, props.secrets);
    if (secrets) this.function.addToRolePolicy(secrets);
    for (const s of props.extraStatements ?? []) this.function.addToRolePolicy(s);
    this.healthRule = new events.Rule(this, 'HealthSchedule', {
      description: 'pg-cdc-to-kinesis: slot health metrics every minute',
      schedule: events.Schedule.rate(props.healthSchedule ?? Duration.minutes(1)),
      targets: [
        new targets.LambdaFunction(this.function, {
          event: events.RuleTargetInput.fromObject({ action: 'health' }),
          retryAttempts: 0,
        }),
      ],
    });
  }
}

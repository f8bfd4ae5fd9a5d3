/**
 * One streamer: an ECS Fargate service running `pg-cdc-to-kinesis run` for the slots
 * of one configs.yml.
 *
 * Owns the deployment rules that keep a slot single-consumer: exactly one task,
 * `minHealthyPercent 0` / `maxHealthyPercent 100` so a deployment stops the old task
 * before starting the new one (two streamers would fight over the slot), a circuit
 * breaker that rolls back a task that never becomes healthy, a stop timeout longer
 * than the streamer's drain, the container health check on `/healthz`, and the log
 * group. It never grants more than `permissions.ts` lists.
 */
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import type { CpuArchitecture } from './lambda-code.ts';
import { type CheckpointLocation, checkpointReadWriteStatement, kinesisStatement, secretsStatement } from './permissions.ts';

/** The port of `/healthz`, `/readyz` and `/metrics` (the streamer's `http_listen` default). */
export const HEALTH_PORT = 8080;
/** Seconds ECS waits after SIGTERM before SIGKILL: above the drain timeout. */
export const STOP_TIMEOUT_MARGIN_SECS = 35;
/** Fargate's maximum stop timeout. */
const MAX_STOP_TIMEOUT_SECS = 120;

export interface StreamerServiceProps {
  readonly cluster: ecs.ICluster;
  readonly image: ecs.ContainerImage;
  readonly subnets: ec2.SubnetSelection;
  readonly securityGroup: ec2.ISecurityGroup;
  /** The config file inside the image, e.g. `/etc/pg-cdc-to-kinesis/configs.yml`. */
  readonly configPathInImage: string;
  /** ARNs of the streams this service writes to. */
  readonly streamArns: readonly string[];
  /** `secret:` values of this service's slots (names or ARNs). */
  readonly secrets: readonly string[];
  /** Where the checkpoints are. */
  readonly checkpoints: CheckpointLocation;
  /** Further statements (RDS IAM sign-in, KMS keys of the secrets). */
  readonly extraStatements?: readonly iam.PolicyStatement[];
  /** The task's CPU (default arm64, Graviton). */
  readonly architecture?: CpuArchitecture;
  /** The streamer's `shutdown_timeout_secs`; the stop timeout is set above it. */
  readonly shutdownTimeoutSecs: number;
  /** Log retention (default one month). */
  readonly logRetention?: logs.RetentionDays;
  /** Extra container environment (e.g. `PGHOST` for `${PGHOST}` in configs.yml). */
  readonly environment?: Readonly<Record<string, string>>;
  /** Task size (defaults: 0.5 vCPU, 1 GiB). */
  readonly cpu?: number;
  readonly memoryLimitMiB?: number;
}

export class StreamerService extends Construct {
  public readonly service: ecs.FargateService;
  public readonly logGroup: logs.LogGroup;
  public readonly taskRole: iam.IRole;
  public readonly taskDefinition: ecs.FargateTaskDefinition;

  constructor(scope: Construct, id: string, props: StreamerServiceProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const stopTimeout = Math.min(props.shutdownTimeoutSecs + STOP_TIMEOUT_MARGIN_SECS, MAX_STOP_TIMEOUT_SECS);
    if (stopTimeout <= props.shutdownTimeoutSecs) {
      throw new Error(
        `shutdown_timeout_secs ${props.shutdownTimeoutSecs} leaves no room inside Fargate's ${MAX_STOP_TIMEOUT_SECS} s stop timeout; lower it`,
      );
    }
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const task = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: props.cpu ?? 512,
      memoryLimitMiB: props.memoryLimitMiB ?? 1024,
      runtimePlatform: {
        cpuArchitecture: props.architecture === 'x86_64' ? ecs.CpuArchitecture.X86_64 : ecs.CpuArchitecture.ARM64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    task.addToTaskRolePolicy(kinesisStatement(props.streamArns));
    task.addToTaskRolePolicy(checkpointReadWriteStatement(stack, props.checkpoints));
    const secrets = secretsStatement(stack, props.secrets);
    if (secrets) task.addToTaskRolePolicy(secrets);
    for (const s of props.extraStatements ?? []) task.addToTaskRolePolicy(s);
    task.addContainer('streamer', {
      image: props.image,
      // The image's entrypoint is `pg-cdc-to-kinesis run --log-format json`.
      command: ['--config', props.configPathInImage],
      environment: { RUST_LOG: 'info', ...(props.environment ?? {}) },
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'streamer' }),
      stopTimeout: Duration.seconds(stopTimeout),
      portMappings: [{ containerPort: HEALTH_PORT }],
      healthCheck: {
        command: ['CMD-SHELL', `curl -fsS http://127.0.0.1:${HEALTH_PORT}/healthz || exit 1`],
        interval: Duration.seconds(30),
        timeout: Duration.seconds(5),
        retries: 3,
        startPeriod: Duration.seconds(60),
      },
    });
    this.taskRole = task.taskRole;
    this.taskDefinition = task;
    this.service = new ecs.FargateService(this, 'Service', {
      cluster: props.cluster,
      taskDefinition: task,
      desiredCount: 1,
      minHealthyPercent: 0,
      maxHealthyPercent: 100,
      circuitBreaker: { enable: true, rollback: true },
      vpcSubnets: props.subnets,
      securityGroups: [props.securityGroup],
      assignPublicIp: false,
      // The stack's tags (-c tags=...) on every task, for cost allocation.
      propagateTags: ecs.PropagatedTagSource.SERVICE,
      enableECSManagedTags: true,
    });
  }
}

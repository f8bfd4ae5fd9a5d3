/**
 * The whole deployment of pg-cdc-to-kinesis in one stack: network, Kinesis streams,
 * one Fargate streamer service per configs file, one admin Lambda per configs file,
 * alarms, a dashboard and the outputs an operator needs.
 *
 * Owns how the constructs are wired together (which service writes which streams,
 * which function watches which slots) and the checks that keep the pieces consistent
 * before anything is deployed: one metrics namespace, stream names under the stack's
 * prefix, a CA file both the image and the Lambda have, and an IAM grant for every
 * slot that signs in with IAM. Every decision about a single resource lives in that
 * resource's construct; this file only connects them.
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import { CfnOutput, Stack, type StackProps, Tags } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { AdminFunction } from './admin-function.ts';
import { Alarms, type AlarmThresholds } from './alarms.ts';
import { CaBundleLayer, RDS_CA_BUNDLE_PATH } from './ca-bundle.ts';
import { type CdcConfig, distinctSecrets, distinctStreams, explicitCheckpointParameters } from './config.ts';
import { Dashboard } from './dashboard.ts';
import { type CpuArchitecture, refuseDeployWithPlaceholder, resolveLambdaCode } from './lambda-code.ts';
import { DEFAULT_NAMESPACE } from './metrics.ts';
import { acknowledgeEcrAuthorization, acknowledgeNagFindings } from './nag.ts';
import { type ExistingNetwork, Network } from './network.ts';
import {
  defaultCheckpointPrefix,
  ENV_CHECKPOINT_PREFIX,
  type IamDbUser,
  rdsConnectStatement,
  secretKeysStatement,
} from './permissions.ts';
import { ENV_OVERSIZE_BUCKET, OversizeBucket } from './oversize-bucket.ts';
import { Streams } from './streams.ts';
import { StreamerService } from './streamer-service.ts';

/** Where the Dockerfile puts the configs files inside the image. */
export const IMAGE_CONFIG_DIR = '/etc/pg-cdc-to-kinesis';
/** The variable configs.yml writes in `kns_stream` to take the stack's stream prefix. */
export const ENV_STREAM_PREFIX = 'PG_CDC_STREAM_PREFIX';
/** Where the runbook links point unless `runbookUrl` is given. */
export const DEFAULT_RUNBOOK_URL = 'RUNBOOK.md';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** One streamer service and the slots of its configs file. */
export interface ServiceSpec {
  /** Short name, `[A-Za-z0-9-]`; names the ECS service, the Lambda and the alarms. */
  readonly name: string;
  /** The file's name in the repo root, copied into the image (e.g. `configs.yml`). */
  readonly configFile: string;
  readonly config: CdcConfig;
}

/** Build the image from the repo's Dockerfile, or use one already pushed. */
export type ImageSource = { readonly directory: string } | { readonly uri: string };

export interface PgCdcStackProps extends StackProps {
  /** At least one service; slots must not repeat across services. */
  readonly services: readonly ServiceSpec[];
  readonly image: ImageSource;
  /** Directory with the admin Lambda's `bootstrap`; unset synthesizes a placeholder that cannot be deployed. */
  readonly lambdaCodeDir?: string;
  /** The repository root (for `certs/`); default the one this file is in. */
  readonly repoRoot?: string;
  /** CPU of the Fargate task and the Lambda (default `arm64`). */
  readonly architecture?: CpuArchitecture;
  /** An existing network; unset creates a VPC. */
  readonly network?: ExistingNetwork;
  /** Availability zones of a new VPC (default: looked up, two of the region's). */
  readonly availabilityZones?: readonly string[];
  /** VPC endpoints for subnets without NAT. */
  readonly vpcEndpoints?: boolean;
  /** Prefix of every stream's name; configs.yml must write `${PG_CDC_STREAM_PREFIX:-}` in `kns_stream`. */
  readonly namePrefix?: string;
  /** Provisioned shards for every stream; unset means on-demand. */
  readonly shardCount?: number;
  readonly shardsByStream?: Readonly<Record<string, number>>;
  /** CloudWatch namespace; must equal configs.yml's `metrics_namespace` (which wins when unset). */
  readonly metricsNamespace?: string;
  /** Checkpoint prefix (default `/pg-cdc-to-kinesis/<stack name>`). */
  readonly checkpointPrefix?: string;
  /** The RDS user slots with `iam_auth: true` sign in as. */
  readonly iamDbUser?: IamDbUser;
  /** Customer-managed KMS keys of the `secret:`s. */
  readonly secretKmsKeyArns?: readonly string[];
  /** RDS instances for the RDS-side alarms. */
  readonly dbInstanceIdentifiers?: readonly string[];
  /** Email address subscribed to the alarm topic. */
  readonly alarmEmail?: string;
  readonly thresholds?: AlarmThresholds;
  /** Base URL of RUNBOOK.md for the alarm descriptions. */
  readonly runbookUrl?: string;
  /** Tags on every resource (and propagated to the tasks). */
  readonly tags?: Readonly<Record<string, string>>;
  /** Log retention for the streamer and the Lambda (default one month). */
  readonly logRetention?: logs.RetentionDays;
  /** Environment for `${VAR}` in configs.yml, given to the containers and the Lambdas. */
  readonly environment?: Readonly<Record<string, string>>;
  /** An existing bucket for `oversize: s3`; unset creates one when a slot uses it. */
  readonly oversizeBucketName?: string;
  /** Days before a created oversize bucket's objects expire (default 30). */
  readonly oversizeExpirationDays?: number;
}

/** The namespace every config file and the context agree on, or an error saying who disagrees. */
export function oneNamespace(services: readonly ServiceSpec[], fromContext: string | undefined): string {
  const byFile = services.map((s) => [s.configFile, s.config.metricsNamespace ?? DEFAULT_NAMESPACE] as const);
  const namespaces = new Set(byFile.map(([, ns]) => ns));
  if (namespaces.size > 1) {
    throw new Error(
      `metrics_namespace differs between the configs files (${byFile.map(([f, ns]) => `${f}: ${ns}`).join(', ')}): the alarms watch one namespace; set the same metrics_namespace in each`,
    );
  }
  const [fromConfig] = namespaces as Set<string>;
  if (fromContext !== undefined && fromContext !== fromConfig) {
    throw new Error(
      `-c metricsNamespace=${fromContext} differs from metrics_namespace ${fromConfig} in ${byFile[0]![0]}, where the streamer writes its metrics: the alarms would watch a namespace nothing writes to. Drop -c metricsNamespace (configs.yml decides) or make them equal`,
    );
  }
  return fromConfig!;
}

export class PgCdcStack extends Stack {
  public readonly streams: Streams;
  public readonly services: ReadonlyMap<string, StreamerService>;
  public readonly adminFunctions: ReadonlyMap<string, AdminFunction>;
  public readonly alarms: Alarms;
  public readonly caBundle: CaBundleLayer;
  public readonly network: Network;
  public readonly checkpointPrefix: string;
  public readonly namespace: string;
  /** The bucket of oversized rows, when a slot has `oversize: s3`. */
  public readonly oversize?: OversizeBucket;

  constructor(scope: Construct, id: string, props: PgCdcStackProps) {
    super(scope, id, props);
    if (props.services.length === 0) throw new Error('at least one service (configs file) is required');
    const allSlots = props.services.flatMap((s) => s.config.slots);
    const seen = new Set<string>();
    for (const slot of allSlots) {
      if (seen.has(slot.name)) {
        throw new Error(`slot ${slot.name} appears in two services: a slot must have exactly one streamer`);
      }
      seen.add(slot.name);
    }
    const arch = props.architecture ?? 'arm64';
    const namespace = (this.namespace = oneNamespace(props.services, props.metricsNamespace));
    this.checkSlots(props);
    for (const [key, value] of Object.entries(props.tags ?? {})) Tags.of(this).add(key, value);

    const checkpoints = {
      prefix: (this.checkpointPrefix = props.checkpointPrefix ?? defaultCheckpointPrefix(this.stackName)),
      explicit: explicitCheckpointParameters(allSlots),
    };
    const environment: Record<string, string> = {
      ...(props.environment ?? {}),
      [ENV_CHECKPOINT_PREFIX]: checkpoints.prefix,
      ...(props.namePrefix ? { [ENV_STREAM_PREFIX]: props.namePrefix } : {}),
    };
    if (allSlots.some((s) => s.oversize) || props.oversizeBucketName) {
      this.oversize = new OversizeBucket(this, 'OversizeBucket', {
        ...(props.oversizeBucketName ? { existingBucketName: props.oversizeBucketName } : {}),
        ...(props.oversizeExpirationDays !== undefined ? { expirationDays: props.oversizeExpirationDays } : {}),
      });
      environment[ENV_OVERSIZE_BUCKET] = this.oversize.bucket.bucketName;
      new CfnOutput(this, 'OversizeBucketName', { value: this.oversize.bucket.bucketName });
    }
    const extraStatements: iam.PolicyStatement[] = [];
    if (props.iamDbUser) extraStatements.push(rdsConnectStatement(this, props.iamDbUser));
    const keys = secretKeysStatement(this, props.secretKmsKeyArns ?? []);
    if (keys) extraStatements.push(keys);

    const network = (this.network = new Network(this, 'Network', {
      ...(props.network ? { existing: props.network } : {}),
      ...(props.availabilityZones ? { availabilityZones: props.availabilityZones } : {}),
      ...(props.vpcEndpoints ? { vpcEndpoints: true } : {}),
    }));
    this.streams = new Streams(this, 'Streams', {
      streamNames: distinctStreams(allSlots),
      ...(props.shardCount !== undefined ? { shardCount: props.shardCount } : {}),
      ...(props.shardsByStream ? { shardsByStream: props.shardsByStream } : {}),
    });
    const cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: network.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    const image =
      'uri' in props.image
        ? ecs.ContainerImage.fromRegistry(props.image.uri)
        : ecs.ContainerImage.fromAsset(props.image.directory, {
            platform: arch === 'x86_64' ? Platform.LINUX_AMD64 : Platform.LINUX_ARM64,
          });
    const lambdaArch = arch === 'x86_64' ? lambda.Architecture.X86_64 : lambda.Architecture.ARM_64;
    const code = resolveLambdaCode(props.lambdaCodeDir, arch);
    if (code.placeholder) refuseDeployWithPlaceholder(this, arch);
    this.caBundle = new CaBundleLayer(this, 'RdsCaBundle', { repoRoot: props.repoRoot ?? REPO_ROOT, architecture: lambdaArch });

    const services = new Map<string, StreamerService>();
    const functions = new Map<string, AdminFunction>();
    for (const spec of props.services) {
      const streamArns = distinctStreams(spec.config.slots).map((n) => this.streams.byName.get(n)!.streamArn);
      const secrets = distinctSecrets(spec.config.slots);
      const service = new StreamerService(this, `Streamer-${spec.name}`, {
        cluster,
        image,
        architecture: arch,
        subnets: network.subnets,
        securityGroup: network.securityGroup,
        configPathInImage: `${IMAGE_CONFIG_DIR}/${spec.configFile}`,
        streamArns,
        secrets,
        checkpoints,
        extraStatements: [...extraStatements, ...this.oversizeStatements(spec)],
        shutdownTimeoutSecs: spec.config.shutdownTimeoutSecs,
        environment,
        ...(props.logRetention ? { logRetention: props.logRetention } : {}),
      });
      services.set(spec.name, service);
      if (!('uri' in props.image)) acknowledgeEcrAuthorization(service.taskDefinition.obtainExecutionRole());
      const admin = new AdminFunction(this, `Admin-${spec.name}`, {
        codeDir: code.dir,
        architecture: lambdaArch,
        layers: [this.caBundle.layer],
        configText: spec.config.text,
        configParameterName: `/pg-cdc-to-kinesis-config/${this.stackName}/${spec.name}`,
        vpc: network.vpc,
        subnets: network.subnets,
        securityGroup: network.securityGroup,
        secrets,
        checkpoints,
        extraStatements,
        metricsNamespace: namespace,
        environment,
        ...(props.logRetention ? { logRetention: props.logRetention } : {}),
      });
      functions.set(spec.name, admin);
      new CfnOutput(this, `AdminFunctionName-${spec.name}`, { value: admin.function.functionName });
      new CfnOutput(this, `ServiceName-${spec.name}`, { value: service.service.serviceName });
      new CfnOutput(this, `StreamerLogGroup-${spec.name}`, { value: service.logGroup.logGroupName });
      new CfnOutput(this, `AdminLogGroup-${spec.name}`, { value: admin.logGroup.logGroupName });
    }
    this.services = services;
    this.adminFunctions = functions;
    this.alarms = new Alarms(this, 'Alarms', {
      namespace,
      namePrefix: this.stackName,
      runbookUrl: props.runbookUrl ?? DEFAULT_RUNBOOK_URL,
      slots: allSlots,
      streams: distinctStreams(allSlots),
      services: [...services].map(([name, s]) => ({ name, clusterName: cluster.clusterName, service: s.service })),
      adminFunctions: [...functions].map(([name, f]) => ({ name, fn: f.function })),
      ...(props.dbInstanceIdentifiers ? { dbInstanceIdentifiers: props.dbInstanceIdentifiers } : {}),
      ...(props.alarmEmail ? { email: props.alarmEmail } : {}),
      ...(props.thresholds ? { thresholds: props.thresholds } : {}),
    });
    const dashboardName = this.stackName;
    new Dashboard(this, 'Dashboard', { namespace, slots: allSlots, dashboardName });
    for (const [name, stream] of this.streams.byName) {
      new CfnOutput(this, `StreamName-${name}`, { value: stream.streamName });
      new CfnOutput(this, `StreamArn-${name}`, { value: stream.streamArn });
    }
    new CfnOutput(this, 'SecurityGroupId', {
      value: network.securityGroup.securityGroupId,
      description: "Allow this security group on the database's port in the database's security group",
    });
    new CfnOutput(this, 'ClusterName', { value: cluster.clusterName });
    new CfnOutput(this, 'DashboardUrl', {
      // The name, not a reference: the dashboard has a fixed name, and the URL reads as one.
      value: `https://console.aws.amazon.com/cloudwatch/home?region=${this.region}#dashboards:name=${dashboardName}`,
    });
    new CfnOutput(this, 'CheckpointPrefix', { value: checkpoints.prefix });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.alarms.topic.topicArn });
    acknowledgeNagFindings(this, checkpoints.prefix);
  }

  /** `s3:PutObject` under the prefixes of the service's `oversize: s3` slots. */
  private oversizeStatements(spec: ServiceSpec): iam.PolicyStatement[] {
    const slots = spec.config.slots.flatMap((s) => (s.oversize ? [{ name: s.name, prefix: s.oversize.prefix }] : []));
    return this.oversize && slots.length ? [this.oversize.putStatement(slots)] : [];
  }

  /** Refuse, at synth, what would only fail once deployed. */
  private checkSlots(props: PgCdcStackProps): void {
    for (const spec of props.services) {
      for (const slot of spec.config.slots) {
        const where = `${spec.configFile}: slot ${slot.name}`;
        if (slot.sslrootcert !== undefined && slot.sslrootcert !== RDS_CA_BUNDLE_PATH) {
          throw new Error(
            `${where}: sslrootcert ${slot.sslrootcert} is not in both the image and the admin Lambda, so the Lambda could not load the config; use ${RDS_CA_BUNDLE_PATH} (the RDS CA bundle, in both) or leave it unset (the system trust store)`,
          );
        }
        if (slot.iamAuth && !props.iamDbUser) {
          throw new Error(
            `${where}: iam_auth is true but no rds-db:connect grant: deploy with -c dbResourceId=db-XXXX (the instance's resource id) -c dbUser=${slot.user ?? 'USER'}`,
          );
        }
        if (slot.iamAuth && props.iamDbUser && slot.user !== undefined && slot.user !== props.iamDbUser.dbUser) {
          throw new Error(`${where}: signs in as ${slot.user} but -c dbUser=${props.iamDbUser.dbUser}; they must be the same user`);
        }
        const bucket = slot.oversize?.bucketTemplate;
        const stackBucket = bucket !== undefined && (bucket.includes(`\${${ENV_OVERSIZE_BUCKET}`) || bucket === props.oversizeBucketName);
        if (slot.oversize && !stackBucket) {
          throw new Error(
            `${where}: oversize is s3 but oversize_bucket ${bucket ?? '(unset)'} is not the stack's bucket, so the task could not write to it: write oversize_bucket: \${${ENV_OVERSIZE_BUCKET}} (the bucket the stack creates, or -c oversizeBucketName)`,
          );
        }
        if (props.namePrefix) {
          if (!slot.streamTemplate.includes(`\${${ENV_STREAM_PREFIX}`) || !slot.stream.startsWith(props.namePrefix)) {
            throw new Error(
              `${where}: namePrefix ${props.namePrefix} is set but kns_stream ${slot.streamTemplate} does not take it: write kns_stream: \${${ENV_STREAM_PREFIX}:-}${slot.streamTemplate}, so that the streamer writes to the stream the stack creates`,
            );
          }
          for (const route of slot.routes) {
            if (!route.template.includes(`\${${ENV_STREAM_PREFIX}`) || !route.stream.startsWith(props.namePrefix)) {
              throw new Error(
                `${where}: namePrefix ${props.namePrefix} is set but the tables: entry's stream ${route.template} does not take it: write stream: \${${ENV_STREAM_PREFIX}:-}${route.template}, so that the streamer writes to the stream the stack creates`,
              );
            }
          }
        }
      }
    }
  }
}

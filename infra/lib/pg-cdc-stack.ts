/**
 * The whole deployment of pg-cdc-to-kinesis in one stack: network, Kinesis streams,
 * one Fargate streamer service per configs file, one admin Lambda per configs file,
 * alarms and a dashboard.
 *
 * Owns how the constructs are wired together (which service writes which streams,
 * which function watches which slots). Every decision about a single resource lives
 * in that resource's construct; this file only connects them.
 */
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { AdminFunction } from './admin-function.ts';
import { Alarms, type AlarmThresholds } from './alarms.ts';
import { type CdcConfig, distinctSecrets, distinctStreams } from './config.ts';
import { Dashboard } from './dashboard.ts';
import { DEFAULT_NAMESPACE } from './metrics.ts';
import { acknowledgeNagFindings } from './nag.ts';
import { type ExistingNetwork, Network } from './network.ts';
import { Streams } from './streams.ts';
import { StreamerService } from './streamer-service.ts';

/** Where the Dockerfile puts the configs files inside the image. */
export const IMAGE_CONFIG_DIR = '/etc/pg-cdc-to-kinesis';

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
  /** Directory with the admin Lambda's `bootstrap`. */
  readonly lambdaCodeDir: string;
  /** An existing network; unset creates a VPC. */
  readonly network?: ExistingNetwork;
  /** Availability zones of a new VPC (default: looked up, two of the region's). */
  readonly availabilityZones?: readonly string[];
  /** Provisioned shards for every stream; unset means on-demand. */
  readonly shardCount?: number;
  readonly shardsByStream?: Readonly<Record<string, number>>;
  /** CloudWatch namespace of the metrics (default `PgCdcToKinesis`). */
  readonly metricsNamespace?: string;
  /** Email address subscribed to the alarm topic. */
  readonly alarmEmail?: string;
  readonly thresholds?: AlarmThresholds;
  /** Log retention for the streamer and the Lambda (default one month). */
  readonly logRetention?: logs.RetentionDays;
  /** Environment for `${VAR}` in configs.yml, given to the containers and the Lambdas. */
  readonly environment?: Readonly<Record<string, string>>;
}

export class PgCdcStack extends Stack {
  public readonly streams: Streams;
  public readonly services: ReadonlyMap<string, StreamerService>;
  public readonly adminFunctions: ReadonlyMap<string, AdminFunction>;
  public readonly alarms: Alarms;

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
    const namespace = props.metricsNamespace ?? DEFAULT_NAMESPACE;
    const network = new Network(this, 'Network', {
      ...(props.network ? { existing: props.network } : {}),
      ...(props.availabilityZones ? { availabilityZones: props.availabilityZones } : {}),
    });
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
        : ecs.ContainerImage.fromAsset(props.image.directory, { platform: Platform.LINUX_AMD64 });
    const services = new Map<string, StreamerService>();
    const functions = new Map<string, AdminFunction>();
    for (const spec of props.services) {
      const streamArns = distinctStreams(spec.config.slots).map((n) => this.streams.byName.get(n)!.streamArn);
      const secrets = distinctSecrets(spec.config.slots);
      const service = new StreamerService(this, `Streamer-${spec.name}`, {
        cluster,
        image,
        subnets: network.subnets,
        securityGroup: network.securityGroup,
        configPathInImage: `${IMAGE_CONFIG_DIR}/${spec.configFile}`,
        streamArns,
        secrets,
        shutdownTimeoutSecs: spec.config.shutdownTimeoutSecs,
        ...(props.logRetention ? { logRetention: props.logRetention } : {}),
        ...(props.environment ? { environment: props.environment } : {}),
      });
      services.set(spec.name, service);
      functions.set(
        spec.name,
        new AdminFunction(this, `Admin-${spec.name}`, {
          codeDir: props.lambdaCodeDir,
          configText: spec.config.text,
          configParameterName: `/pg-cdc-to-kinesis-config/${this.stackName}/${spec.name}`,
          vpc: network.vpc,
          subnets: network.subnets,
          securityGroup: network.securityGroup,
          secrets,
          metricsNamespace: namespace,
          ...(props.logRetention ? { logRetention: props.logRetention } : {}),
          ...(props.environment ? { environment: props.environment } : {}),
        }),
      );
      new CfnOutput(this, `AdminFunctionName-${spec.name}`, { value: functions.get(spec.name)!.function.functionName });
      new CfnOutput(this, `StreamerLogGroup-${spec.name}`, { value: service.logGroup.logGroupName });
      new CfnOutput(this, `AdminLogGroup-${spec.name}`, { value: functions.get(spec.name)!.logGroup.logGroupName });
    }
    this.services = services;
    this.adminFunctions = functions;
    this.alarms = new Alarms(this, 'Alarms', {
      namespace,
      slots: allSlots,
      streams: distinctStreams(allSlots),
      services: [...services].map(([name, s]) => ({
        name,
        clusterName: cluster.clusterName,
        serviceName: s.service.serviceName,
      })),
      adminFunctions: [...functions.values()].map((f) => f.function),
      ...(props.alarmEmail ? { email: props.alarmEmail } : {}),
      ...(props.thresholds ? { thresholds: props.thresholds } : {}),
    });
    new Dashboard(this, 'Dashboard', { namespace, slots: allSlots });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.alarms.topic.topicArn });
    acknowledgeNagFindings(this);
  }
}

/**
 * Alarms, all sent to one SNS topic (with an optional email subscription): per slot
 * replication lag (bytes and milliseconds), slot inactive, checkpoint age and WAL the
 * slot retains; per stream throttled and failed records; per service no running task
 * and memory; admin Lambda errors and throttles; and, given the database instance,
 * RDS's own replication-slot lag and transaction-log disk usage, which still fire when
 * the whole stack is down.
 *
 * Owns thresholds, names (`<stack>-<alarm>-<slot|stream|service>`, stable across
 * deploys), the runbook link in every description, missing-data treatment, and the
 * topic's encryption: a customer-managed key whose policy lets CloudWatch use it, and
 * a topic policy that lets CloudWatch alarms of this account publish (the AWS-managed
 * `aws/sns` key and a Deny-only policy would silently drop every notification). A
 * metric that stops arriving from the health check (`SlotActive`) or from ECS
 * (`RunningTaskCount`) alarms, because silence there means nobody is watching; both
 * wait long enough to ride out a deployment's stop and start. It never acts on an
 * alarm itself.
 */
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import type { SlotSpec } from './config.ts';
import { kinesisMetric, METRIC, slotMetric } from './metrics.ts';

/** 10 GiB: the default `SlotRetainedWalBytes` threshold. */
export const DEFAULT_RETAINED_WAL_BYTES = 10 * 1024 ** 3;

/**
 * Minutes a missing or zero `SlotActive`/`RunningTaskCount` is tolerated: a deployment
 * stops the old task (up to the 120 s stop timeout) before the new one pulls its
 * image, starts and connects (a few minutes), and that must not page anyone.
 */
export const DEPLOY_GRACE_MINUTES = 10;

/** Thresholds; every one has a default. */
export interface AlarmThresholds {
  /** Replication lag in WAL bytes (default 1 GiB). */
  readonly lagBytes?: number;
  /** Replication lag in milliseconds (default 5 minutes). */
  readonly lagMs?: number;
  /** Checkpoint age in seconds (default 15 minutes). */
  readonly checkpointAgeSeconds?: number;
  /** Throttled records per stream per minute, for 5 minutes (default 100). */
  readonly throttledRecordsPerMinute?: number;
  /** WAL a slot retains on the server, and RDS's slot lag (default 10 GiB). */
  readonly retainedWalBytes?: number;
  /** RDS transaction-log disk usage in bytes (default twice `retainedWalBytes`). */
  readonly transactionLogsBytes?: number;
  /** ECS memory utilisation, percent of the task's memory (default 80). */
  readonly memoryPercent?: number;
}

/** One streamer service. */
export interface ServiceRef {
  readonly name: string;
  readonly clusterName: string;
  readonly service: ecs.FargateService;
}

export interface AlarmsProps {
  readonly namespace: string;
  /** Prefix of every alarm name (the stack's name). */
  readonly namePrefix: string;
  /** Base of the runbook links, e.g. `https://github.com/org/repo/blob/main/RUNBOOK.md`. */
  readonly runbookUrl: string;
  readonly slots: readonly SlotSpec[];
  readonly streams: readonly string[];
  readonly services: readonly ServiceRef[];
  /** The admin function of each service, by service name. */
  readonly adminFunctions: readonly { readonly name: string; readonly fn: lambda.IFunction }[];
  /** RDS instances whose `OldestReplicationSlotLag`/`TransactionLogsDiskUsage` to watch. */
  readonly dbInstanceIdentifiers?: readonly string[];
  /** Subscribe this address to the topic (it must confirm the subscription). */
  readonly email?: string;
  readonly thresholds?: AlarmThresholds;
}

/** The runbook's section for each alarm (its heading's anchor). */
export const RUNBOOK_ANCHOR = {
  lagBytes: 'replicationlagbytes',
  lagMs: 'replicationlagms',
  slotInactive: 'slotinactive',
  checkpointAge: 'checkpointage',
  retainedWal: 'slotretainedwalbytes',
  throttled: 'throttled',
  failedRecords: 'failedrecords',
  noRunningTask: 'norunningtask',
  memory: 'memoryutilization',
  adminErrors: 'adminerrors',
  adminThrottles: 'adminthrottles',
  rdsSlotLag: 'rdsoldestreplicationslotlag',
  rdsTransactionLogs: 'rdstransactionlogsdiskusage',
} as const;

export class Alarms extends Construct {
  public readonly topic: sns.Topic;
  public readonly key: kms.Key;
  public readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: AlarmsProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const t = props.thresholds ?? {};
    const alarmArns = stack.formatArn({ service: 'cloudwatch', resource: 'alarm', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    const fromOurAlarms = {
      StringEquals: { 'aws:SourceAccount': stack.account },
      ArnLike: { 'aws:SourceArn': alarmArns },
    };
    this.key = new kms.Key(this, 'TopicKey', {
      description: 'pg-cdc-to-kinesis alarm topic: CloudWatch alarms of this account may use it',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.DESTROY,
      pendingWindow: Duration.days(7),
    });
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsUseTheKey',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: fromOurAlarms,
      }),
    );
    this.topic = new sns.Topic(this, 'Topic', {
      displayName: 'pg-cdc-to-kinesis alarms',
      masterKey: this.key,
      enforceSSL: true,
    });
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: fromOurAlarms,
      }),
    );
    if (props.email) this.topic.addSubscription(new subscriptions.EmailSubscription(props.email));
    const add = (kind: string, subject: string, anchor: string, alarm: Omit<cloudwatch.AlarmProps, 'alarmName'>) => {
      const name = `${props.namePrefix}-${kind}${subject ? `-${subject}` : ''}`;
      const a = new cloudwatch.Alarm(this, `${kind}${subject ? `-${subject}` : ''}`, {
        ...alarm,
        alarmName: name,
        alarmDescription: `${alarm.alarmDescription} Runbook: ${props.runbookUrl}#${anchor}`,
      });
      a.addAlarmAction(new actions.SnsAction(this.topic));
      a.addOkAction(new actions.SnsAction(this.topic));
      this.alarms.push(a);
    };
    const ns = props.namespace;
    const retained = t.retainedWalBytes ?? DEFAULT_RETAINED_WAL_BYTES;
    for (const slot of props.slots) {
      add('LagBytes', slot.name, RUNBOOK_ANCHOR.lagBytes, {
        alarmDescription: `Slot ${slot.name}: replication lag above ${t.lagBytes ?? 1024 ** 3} bytes; the streamer is behind or stopped, and WAL piles up on the server.`,
        metric: slotMetric(ns, METRIC.replicationLagBytes, slot.name),
        threshold: t.lagBytes ?? 1024 ** 3,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      add('LagMs', slot.name, RUNBOOK_ANCHOR.lagMs, {
        alarmDescription: `Slot ${slot.name}: changes reach Kinesis more than ${t.lagMs ?? 300000} ms after commit.`,
        metric: slotMetric(ns, METRIC.replicationLagMs, slot.name),
        threshold: t.lagMs ?? 300_000,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      add('SlotInactive', slot.name, RUNBOOK_ANCHOR.slotInactive, {
        alarmDescription: `Slot ${slot.name}: no walsender has streamed from it for ${DEPLOY_GRACE_MINUTES} minutes (or the health check cannot tell); the streamer is down.`,
        metric: slotMetric(ns, METRIC.slotActive, slot.name, 'Minimum'),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: DEPLOY_GRACE_MINUTES,
        datapointsToAlarm: DEPLOY_GRACE_MINUTES,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
      add('CheckpointAge', slot.name, RUNBOOK_ANCHOR.checkpointAge, {
        alarmDescription: `Slot ${slot.name}: checkpoint older than ${t.checkpointAgeSeconds ?? 900} s; progress is not being recorded.`,
        metric: slotMetric(ns, METRIC.checkpointAgeSeconds, slot.name),
        threshold: t.checkpointAgeSeconds ?? 900,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      add('RetainedWal', slot.name, RUNBOOK_ANCHOR.retainedWal, {
        alarmDescription: `Slot ${slot.name}: it holds more than ${retained} bytes of WAL on the server; the disk fills, or the slot is invalidated at max_slot_wal_keep_size.`,
        metric: slotMetric(ns, METRIC.slotRetainedWalBytes, slot.name),
        threshold: retained,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
    for (const stream of props.streams) {
      add('Throttled', stream, RUNBOOK_ANCHOR.throttled, {
        alarmDescription: `Stream ${stream}: sustained throttling; add shards or switch to on-demand.`,
        metric: kinesisMetric('PutRecords.ThrottledRecords', stream),
        threshold: t.throttledRecordsPerMinute ?? 100,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      add('FailedRecords', stream, RUNBOOK_ANCHOR.failedRecords, {
        alarmDescription: `Stream ${stream}: Kinesis failed records (internal errors); the streamer retries them, check the stream's health.`,
        metric: kinesisMetric('PutRecords.FailedRecords', stream),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
    for (const svc of props.services) {
      add('NoRunningTask', svc.name, RUNBOOK_ANCHOR.noRunningTask, {
        alarmDescription: `Service ${svc.name}: no streamer task running for ${DEPLOY_GRACE_MINUTES} minutes; its slots are not streamed.`,
        metric: new cloudwatch.Metric({
          namespace: 'ECS/ContainerInsights',
          metricName: 'RunningTaskCount',
          dimensionsMap: { ClusterName: svc.clusterName, ServiceName: svc.service.serviceName },
          statistic: 'Minimum',
          period: Duration.minutes(1),
        }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: DEPLOY_GRACE_MINUTES,
        datapointsToAlarm: DEPLOY_GRACE_MINUTES,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
      add('Memory', svc.name, RUNBOOK_ANCHOR.memory, {
        alarmDescription: `Service ${svc.name}: the streamer uses more than ${t.memoryPercent ?? 80}% of its task memory; an out-of-memory kill restarts it.`,
        metric: svc.service.metricMemoryUtilization({ period: Duration.minutes(1), statistic: 'Maximum' }),
        threshold: t.memoryPercent ?? 80,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
    for (const { name: subject, fn } of props.adminFunctions) {
      add('AdminErrors', subject, RUNBOOK_ANCHOR.adminErrors, {
        alarmDescription: 'Admin Lambda errors: the health check failed (config, SSM or the database); see its log group.',
        metric: fn.metricErrors({ period: Duration.minutes(1), statistic: 'Sum' }),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        datapointsToAlarm: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      add('AdminThrottles', subject, RUNBOOK_ANCHOR.adminThrottles, {
        alarmDescription: 'Admin Lambda throttled: health checks are not running, so the slot metrics go missing.',
        metric: fn.metricThrottles({ period: Duration.minutes(1), statistic: 'Sum' }),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        datapointsToAlarm: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
    for (const db of props.dbInstanceIdentifiers ?? []) {
      const rds = (metricName: string) =>
        new cloudwatch.Metric({
          namespace: 'AWS/RDS',
          metricName,
          dimensionsMap: { DBInstanceIdentifier: db },
          statistic: 'Maximum',
          period: Duration.minutes(5),
        });
      add('RdsSlotLag', db, RUNBOOK_ANCHOR.rdsSlotLag, {
        alarmDescription: `RDS ${db}: its most lagging replication slot holds more than ${retained} bytes of WAL (RDS's own metric: fires even when the stack is down).`,
        metric: rds('OldestReplicationSlotLag'),
        threshold: retained,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      add('RdsTransactionLogs', db, RUNBOOK_ANCHOR.rdsTransactionLogs, {
        alarmDescription: `RDS ${db}: transaction logs use more than ${t.transactionLogsBytes ?? 2 * retained} bytes of disk (RDS's own metric: fires even when the stack is down).`,
        metric: rds('TransactionLogsDiskUsage'),
        threshold: t.transactionLogsBytes ?? 2 * retained,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
  }
}

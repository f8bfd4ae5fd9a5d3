/**
 * Alarms, all sent to one SNS topic (with an optional email subscription): per slot
 * replication lag (bytes and milliseconds), slot inactive, checkpoint age; per stream
 * throttled and failed records; per service no running task; and admin Lambda errors.
 *
 * Owns thresholds and missing-data treatment: a metric that stops arriving from the
 * health check (`SlotActive`) or from ECS (`RunningTaskCount`) alarms, because silence
 * there means nobody is watching. It never acts on an alarm itself.
 */
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Duration } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import type { SlotSpec } from './config.ts';
import { kinesisMetric, METRIC, slotMetric } from './metrics.ts';

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
}

/** One streamer service, for the no-running-task alarm. */
export interface ServiceRef {
  readonly name: string;
  readonly clusterName: string;
  readonly serviceName: string;
}

export interface AlarmsProps {
  readonly namespace: string;
  readonly slots: readonly SlotSpec[];
  readonly streams: readonly string[];
  readonly services: readonly ServiceRef[];
  readonly adminFunctions: readonly lambda.IFunction[];
  /** Subscribe this address to the topic (it must confirm the subscription). */
  readonly email?: string;
  readonly thresholds?: AlarmThresholds;
}

export class Alarms extends Construct {
  public readonly topic: sns.Topic;
  public readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: AlarmsProps) {
    super(scope, id);
    const t = props.thresholds ?? {};
    this.topic = new sns.Topic(this, 'Topic', {
      displayName: 'pg-cdc-to-kinesis alarms',
      masterKey: kms.Alias.fromAliasName(this, 'SnsKey', 'alias/aws/sns'),
      enforceSSL: true,
    });
    if (props.email) this.topic.addSubscription(new subscriptions.EmailSubscription(props.email));
    const add = (id: string, alarm: cloudwatch.AlarmProps) => {
      const a = new cloudwatch.Alarm(this, id, alarm);
      a.addAlarmAction(new actions.SnsAction(this.topic));
      a.addOkAction(new actions.SnsAction(this.topic));
      this.alarms.push(a);
    };
    const ns = props.namespace;
    for (const slot of props.slots) {
      add(`LagBytes-${slot.name}`, {
        alarmDescription: `Slot ${slot.name}: replication lag above ${t.lagBytes ?? 1024 ** 3} bytes; the streamer is behind or stopped, and WAL piles up on the server`,
        metric: slotMetric(ns, METRIC.replicationLagBytes, slot.name),
        threshold: t.lagBytes ?? 1024 ** 3,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      add(`LagMs-${slot.name}`, {
        alarmDescription: `Slot ${slot.name}: changes reach Kinesis more than ${t.lagMs ?? 300000} ms after commit`,
        metric: slotMetric(ns, METRIC.replicationLagMs, slot.name),
        threshold: t.lagMs ?? 300_000,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      add(`SlotInactive-${slot.name}`, {
        alarmDescription: `Slot ${slot.name}: no walsender streams from it (or the health check cannot tell); the streamer is down`,
        metric: slotMetric(ns, METRIC.slotActive, slot.name, 'Minimum'),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 3,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
      add(`CheckpointAge-${slot.name}`, {
        alarmDescription: `Slot ${slot.name}: checkpoint older than ${t.checkpointAgeSeconds ?? 900} s; progress is not being recorded`,
        metric: slotMetric(ns, METRIC.checkpointAgeSeconds, slot.name),
        threshold: t.checkpointAgeSeconds ?? 900,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
    for (const stream of props.streams) {
      add(`Throttled-${stream}`, {
        alarmDescription: `Stream ${stream}: sustained throttling; add shards or switch to on-demand`,
        metric: kinesisMetric('PutRecords.ThrottledRecords', stream),
        threshold: t.throttledRecordsPerMinute ?? 100,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      add(`FailedRecords-${stream}`, {
        alarmDescription: `Stream ${stream}: Kinesis failed records (internal errors); the streamer retries them, check the stream's health`,
        metric: kinesisMetric('PutRecords.FailedRecords', stream),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
    for (const svc of props.services) {
      add(`NoRunningTask-${svc.name}`, {
        alarmDescription: `Service ${svc.name}: no streamer task running; its slots are not streamed`,
        metric: new cloudwatch.Metric({
          namespace: 'ECS/ContainerInsights',
          metricName: 'RunningTaskCount',
          dimensionsMap: { ClusterName: svc.clusterName, ServiceName: svc.serviceName },
          statistic: 'Minimum',
          period: Duration.minutes(1),
        }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 3,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
    }
    props.adminFunctions.forEach((fn, i) => {
      add(`AdminErrors${i}`, {
        alarmDescription: 'Admin Lambda errors: the health check failed (config, SSM or CloudWatch); see its log group',
        metric: fn.metricErrors({ period: Duration.minutes(1), statistic: 'Sum' }),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        datapointsToAlarm: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    });
  }
}

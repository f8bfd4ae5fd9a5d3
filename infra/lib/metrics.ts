/**
 * The metric names the streamer and the admin Lambda publish (both as EMF lines),
 * and helpers that build them with the right dimensions.
 *
 * Owns the contract with `src/metrics/` and `src/admin/health.rs`: a renamed metric
 * there must be renamed here. Sink metrics carry `Slot` and `Stream`; slot metrics
 * carry `Slot` only.
 */
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Duration } from 'aws-cdk-lib';

export const DEFAULT_NAMESPACE = 'PgCdcToKinesis';

export const METRIC = {
  replicationLagBytes: 'ReplicationLagBytes',
  replicationLagMs: 'ReplicationLagMs',
  slotActive: 'SlotActive',
  checkpointAgeSeconds: 'CheckpointAgeSeconds',
  slotRetainedWalBytes: 'SlotRetainedWalBytes',
  recordsPut: 'RecordsPut',
  recordsRetried: 'RecordsRetried',
  throttledRecords: 'ThrottledRecords',
} as const;

/** A metric with the `Slot` dimension. */
export function slotMetric(namespace: string, name: string, slot: string, statistic = 'Maximum'): cloudwatch.Metric {
  return new cloudwatch.Metric({ namespace, metricName: name, dimensionsMap: { Slot: slot }, statistic, period: Duration.minutes(1) });
}

/** A sink metric with the `Slot` and `Stream` dimensions, summed per minute. */
export function sinkMetric(namespace: string, name: string, slot: string, stream: string): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace,
    metricName: name,
    dimensionsMap: { Slot: slot, Stream: stream },
    statistic: 'Sum',
    period: Duration.minutes(1),
  });
}

/** A Kinesis service metric of one stream, summed per minute. */
export function kinesisMetric(name: string, stream: string): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: 'AWS/Kinesis',
    metricName: name,
    dimensionsMap: { StreamName: stream },
    statistic: 'Sum',
    period: Duration.minutes(1),
  });
}

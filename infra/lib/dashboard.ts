/**
 * The CloudWatch dashboard: per slot, replication lag (bytes and ms), throughput
 * (records put) and retries/throttles, plus the health check's slot state.
 *
 * Owns layout only; the metric names come from `metrics.ts`.
 */
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Construct } from 'constructs';
import type { SlotSpec } from './config.ts';
import { METRIC, sinkMetric, slotMetric } from './metrics.ts';

export interface DashboardProps {
  readonly namespace: string;
  readonly slots: readonly SlotSpec[];
  readonly dashboardName?: string;
}

export class Dashboard extends Construct {
  public readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: DashboardProps) {
    super(scope, id);
    const ns = props.namespace;
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      ...(props.dashboardName ? { dashboardName: props.dashboardName } : {}),
    });
    for (const slot of props.slots) {
      this.dashboard.addWidgets(
        new cloudwatch.GraphWidget({
          title: `${slot.name}: replication lag`,
          left: [slotMetric(ns, METRIC.replicationLagBytes, slot.name)],
          right: [slotMetric(ns, METRIC.replicationLagMs, slot.name)],
          width: 8,
        }),
        new cloudwatch.GraphWidget({
          title: `${slot.name}: throughput (records/min to ${slot.stream})`,
          left: [sinkMetric(ns, METRIC.recordsPut, slot.name, slot.stream)],
          width: 8,
        }),
        new cloudwatch.GraphWidget({
          title: `${slot.name}: retries and throttles`,
          left: [
            sinkMetric(ns, METRIC.recordsRetried, slot.name, slot.stream),
            sinkMetric(ns, METRIC.throttledRecords, slot.name, slot.stream),
          ],
          right: [slotMetric(ns, METRIC.slotActive, slot.name, 'Minimum')],
          width: 8,
        }),
      );
    }
  }
}

/**
 * The Kinesis streams: one per distinct `kns_stream` in configs.yml.
 *
 * Owns stream capacity (on-demand by default, provisioned shards when asked),
 * encryption at rest (KMS, the AWS-managed `aws/kinesis` key, so producers need no
 * key grants) and what happens to a stream when the stack lets go of it: it is kept
 * (its records may be the only copy of changes) on a replacement or `cdk destroy`, but
 * deleted when the stack's own creation rolls back, so that a failed first deploy
 * leaves no orphan stream that blocks the next one with "already exists" and keeps
 * billing. It never grants access: the services ask for exactly what they need.
 */
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Construct } from 'constructs';

export interface StreamsProps {
  /** Distinct stream names, as configs.yml spells them. */
  readonly streamNames: readonly string[];
  /** Provisioned shards for every stream; unset means on-demand. */
  readonly shardCount?: number;
  /** Per-stream provisioned shards, overriding `shardCount`. */
  readonly shardsByStream?: Readonly<Record<string, number>>;
  /** How long records stay readable (default 24 hours). */
  readonly retention?: Duration;
}

export class Streams extends Construct {
  /** Stream name → stream. */
  public readonly byName: ReadonlyMap<string, kinesis.IStream>;

  constructor(scope: Construct, id: string, props: StreamsProps) {
    super(scope, id);
    const byName = new Map<string, kinesis.IStream>();
    for (const name of props.streamNames) {
      const shards = props.shardsByStream?.[name] ?? props.shardCount;
      if (shards !== undefined && (!Number.isInteger(shards) || shards < 1)) {
        throw new Error(`stream ${name}: shard count ${shards} must be a positive integer`);
      }
      byName.set(
        name,
        new kinesis.Stream(this, `Stream-${name}`, {
          streamName: name,
          encryption: kinesis.StreamEncryption.MANAGED,
          retentionPeriod: props.retention ?? Duration.hours(24),
          removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
          ...(shards === undefined
            ? { streamMode: kinesis.StreamMode.ON_DEMAND }
            : { streamMode: kinesis.StreamMode.PROVISIONED, shardCount: shards }),
        }),
      );
    }
    this.byName = byName;
  }
}

/**
 * The S3 bucket of oversized rows (`oversize: s3`): the streamer puts a record too
 * large for Kinesis there and a claim check on the stream.
 *
 * Owns the bucket's safety settings (encrypted, no public access, TLS only, objects
 * expire) when the stack creates it, accepting an existing bucket by name instead, and
 * the grant: `s3:PutObject` under each slot's own key prefix only (never read, list or
 * delete). It never decides which slots use it: the stack reads that from configs.yml.
 */
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';

/** The variable the stack sets to the bucket's name, for `oversize_bucket: ${PG_CDC_OVERSIZE_BUCKET}`. */
export const ENV_OVERSIZE_BUCKET = 'PG_CDC_OVERSIZE_BUCKET';
/** Days an object is kept when `expirationDays` is not given. */
export const DEFAULT_OVERSIZE_EXPIRATION_DAYS = 30;

export interface OversizeBucketProps {
  /** An existing bucket's name: used as is (its settings are the owner's). Unset creates one. */
  readonly existingBucketName?: string;
  /** Days before an object of a created bucket expires (default 30): consumers must fetch claims sooner. */
  readonly expirationDays?: number;
}

export class OversizeBucket extends Construct {
  public readonly bucket: s3.IBucket;

  constructor(scope: Construct, id: string, props: OversizeBucketProps = {}) {
    super(scope, id);
    NagSuppressions.addStackSuppressions(Stack.of(this), [
      {
        id: 'AwsSolutions-IAM5',
        reason:
          'The streamer names each oversized row\'s object at run time (<prefix><slot>/<commit_lsn>/<seq>.json): a slot\'s own prefix is the narrowest fixed resource, and the action is s3:PutObject only.',
        appliesTo: [{ regex: '/^Resource::(<OversizeBucket[A-Za-z0-9]*\\.Arn>|arn:<AWS::Partition>:s3:::[a-z0-9.-]+)\\/.*\\/\\*$/' }],
      },
    ]);
    const days = props.expirationDays ?? DEFAULT_OVERSIZE_EXPIRATION_DAYS;
    if (!Number.isInteger(days) || days < 1) {
      throw new Error(`oversizeExpirationDays ${days}: use a whole number of days, at least 1`);
    }
    if (props.existingBucketName !== undefined) {
      this.bucket = s3.Bucket.fromBucketName(this, 'Bucket', props.existingBucketName);
      return;
    }
    const bucket = new s3.Bucket(this, 'Bucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [
        { id: 'ExpireClaimChecks', expiration: Duration.days(days), abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
      // The objects are row data consumers may still need: deleting the stack keeps them.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    NagSuppressions.addResourceSuppressions(bucket, [
      {
        id: 'AwsSolutions-S1',
        reason:
          'Only the streamer writes here (s3:PutObject under its slots\' prefixes); CloudTrail data events, not server access logs, are the audit trail an operator enables if needed.',
      },
    ]);
    this.bucket = bucket;
  }

  /**
   * `s3:PutObject` on `<prefix><slot>/*` of each slot: the keys the streamer writes
   * (`<prefix><slot>/<commit_lsn>/<seq>.json`), nothing else in the bucket.
   */
  putStatement(slots: readonly { readonly name: string; readonly prefix: string }[]): iam.PolicyStatement {
    return new iam.PolicyStatement({
      sid: 'PutOversizedRows',
      actions: ['s3:PutObject'],
      resources: [...new Set(slots.map((s) => this.bucket.arnForObjects(`${s.prefix}${s.name}/*`)))],
    });
  }
}

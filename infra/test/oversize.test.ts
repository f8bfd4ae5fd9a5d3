import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { parseConfig } from '../lib/config.ts';
import { buildStack, CRM_CONFIG } from './fixtures.ts';

/** The CRM service with one slot that sends oversized rows to S3. */
const OVERSIZE_CONFIG = `
replication_slots:
  - docs_slot:
      host: crm.example.internal
      user: cdc
      db_name: crm
      kns_stream: customers-cdc
      oversize: s3
      oversize_bucket: \${PG_CDC_OVERSIZE_BUCKET}
      oversize_prefix: claims/
`;

function withOversize(overrides: Parameters<typeof buildStack>[0] = {}, config = OVERSIZE_CONFIG) {
  return buildStack(
    {
      services: [
        { name: 'crm', configFile: 'configs-crm.yml', config: parseConfig(CRM_CONFIG, 'configs-crm.yml', {}) },
        { name: 'docs', configFile: 'configs-docs.yml', config: parseConfig(config, 'configs-docs.yml', {}) },
      ],
      ...overrides,
    },
    true,
  );
}

test('no oversize bucket unless a slot uses oversize: s3', () => {
  const t = Template.fromStack(buildStack({}, false));
  t.resourceCountIs('AWS::S3::Bucket', 0);
});

test('the oversize bucket is encrypted, private, TLS-only and expires objects', () => {
  const stack = withOversize({ oversizeExpirationDays: 7 });
  const t = Template.fromStack(stack);
  t.resourceCountIs('AWS::S3::Bucket', 1);
  t.hasResource('AWS::S3::Bucket', {
    DeletionPolicy: 'Retain',
    Properties: {
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ ExpirationInDays: 7, Status: 'Enabled' })]) },
    },
  });
  t.hasResourceProperties('AWS::S3::BucketPolicy', {
    PolicyDocument: {
      Statement: Match.arrayWith([
        Match.objectLike({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
      ]),
    },
  });
  const errors = Annotations.fromStack(stack).findError('*', Match.stringLikeRegexp('AwsSolutions-.*'));
  const warnings = Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('AwsSolutions-.*'));
  assert.deepEqual([...errors, ...warnings], [], 'no unacknowledged cdk-nag finding');
});

test('the task may only PutObject under its slot prefix, and learns the bucket name', () => {
  const stack = withOversize();
  const t = Template.fromStack(stack);
  const bucketId = stack.getLogicalId(stack.oversize!.bucket.node.defaultChild as never);
  t.hasResourceProperties('AWS::IAM::Policy', {
    Roles: [{ Ref: Match.stringLikeRegexp('^StreamerdocsTaskTaskRole') }],
    PolicyDocument: {
      Statement: Match.arrayWith([
        {
          Sid: 'PutOversizedRows',
          Effect: 'Allow',
          Action: 's3:PutObject',
          Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketId, 'Arn'] }, '/claims/docs_slot/*']] },
        },
      ]),
    },
  });
  // The other service's role gets no S3 action at all.
  const policies = t.findResources('AWS::IAM::Policy');
  for (const [id, policy] of Object.entries(policies)) {
    const text = JSON.stringify(policy);
    if (text.includes('StreamercrmTaskTaskRole')) assert.ok(!text.includes('s3:'), `${id} has an S3 action`);
    if (text.includes('s3:')) assert.ok(!/s3:(GetObject|DeleteObject|ListBucket|\*)"/.test(text) || id.includes('BucketPolicy'), `${id}: ${text}`);
  }
  t.hasResourceProperties('AWS::ECS::TaskDefinition', {
    ContainerDefinitions: [
      Match.objectLike({
        Environment: Match.arrayWith([{ Name: 'PG_CDC_OVERSIZE_BUCKET', Value: { Ref: bucketId } }]),
      }),
    ],
  });
});

test('an existing bucket is accepted by name and granted the same way', () => {
  const stack = withOversize(
    { oversizeBucketName: 'my-claims' },
    OVERSIZE_CONFIG.replace('${PG_CDC_OVERSIZE_BUCKET}', 'my-claims'),
  );
  const t = Template.fromStack(stack);
  t.resourceCountIs('AWS::S3::Bucket', 0);
  t.hasResourceProperties('AWS::IAM::Policy', {
    PolicyDocument: {
      Statement: Match.arrayWith([
        Match.objectLike({
          Sid: 'PutOversizedRows',
          Action: 's3:PutObject',
          Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::my-claims/claims/docs_slot/*']] },
        }),
      ]),
    },
  });
});

test('a tables: entry with oversize: s3 makes its slot use the bucket too', () => {
  const config = parseConfig(
    `
replication_slots:
  - docs_slot:
      host: h
      user: u
      db_name: d
      kns_stream: customers-cdc
      oversize_bucket: \${PG_CDC_OVERSIZE_BUCKET}
      tables:
        - match: public.docs
          oversize: s3
  - other_slot:
      host: h
      user: u
      db_name: d
      kns_stream: customers-cdc
`,
    'configs-docs.yml',
    {},
  );
  assert.deepEqual(config.slots[0]!.oversize, { bucketTemplate: '\${PG_CDC_OVERSIZE_BUCKET}', prefix: 'pg-cdc-to-kinesis/' });
  assert.equal(config.slots[1]!.oversize, undefined);
});

test('a slot writing to another bucket is refused at synth', () => {
  assert.throws(
    () => withOversize({}, OVERSIZE_CONFIG.replace('${PG_CDC_OVERSIZE_BUCKET}', 'someone-elses')),
    /docs_slot: oversize is s3 but oversize_bucket someone-elses is not the stack's bucket.*PG_CDC_OVERSIZE_BUCKET/,
  );
});

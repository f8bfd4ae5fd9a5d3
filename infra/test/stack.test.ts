import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Aspects, CfnElement, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AwsSolutionsChecks } from 'cdk-nag';
import { parseConfig } from '../lib/config.ts';
import { buildStack, CRM_CONFIG, lambdaDir, ORDERS_CONFIG } from './fixtures.ts';

const stack = buildStack();
const template = Template.fromStack(stack);

function streamArn(s: Stack, name: string): unknown {
  const stream = (s as ReturnType<typeof buildStack>).streams.byName.get(name);
  assert.ok(stream, `no stream ${name}`);
  return { 'Fn::GetAtt': [s.getLogicalId(stream.node.defaultChild as CfnElement), 'Arn'] };
}

// The stack's own checkpoint prefix: two stacks in one account never share checkpoints.
const ssmPrefixArn = {
  'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ssm:eu-west-1:123456789012:parameter/pg-cdc-to-kinesis/TestStack/*']],
};

test('one encrypted on-demand stream per distinct kns_stream', () => {
  template.resourceCountIs('AWS::Kinesis::Stream', 2);
  for (const name of ['orders-cdc', 'customers-cdc']) {
    template.hasResourceProperties('AWS::Kinesis::Stream', {
      Name: name,
      StreamModeDetails: { StreamMode: 'ON_DEMAND' },
      StreamEncryption: { EncryptionType: 'KMS', KeyId: 'alias/aws/kinesis' },
    });
  }
});

test('provisioned shards when asked', () => {
  const t = Template.fromStack(buildStack({ shardCount: 3, shardsByStream: { 'customers-cdc': 1 } }, false));
  t.hasResourceProperties('AWS::Kinesis::Stream', { Name: 'orders-cdc', ShardCount: 3, StreamModeDetails: { StreamMode: 'PROVISIONED' } });
  t.hasResourceProperties('AWS::Kinesis::Stream', { Name: 'customers-cdc', ShardCount: 1 });
});

test('streamer task roles: exactly their streams, the checkpoint prefix and their secrets', () => {
  template.hasResourceProperties('AWS::IAM::Policy', {
    Roles: [{ Ref: Match.stringLikeRegexp('^StreamerordersTaskTaskRole') }],
    PolicyDocument: {
      Statement: Match.arrayEquals([
        Match.objectLike({
          Sid: 'PutRecordsOnConfiguredStreams',
          Effect: 'Allow',
          Action: ['kinesis:PutRecords', 'kinesis:DescribeStreamSummary', 'kinesis:ListShards'],
          Resource: streamArn(stack, 'orders-cdc'),
        }),
        Match.objectLike({ Sid: 'CheckpointsReadWrite', Action: ['ssm:GetParameter', 'ssm:PutParameter'], Resource: ssmPrefixArn }),
        Match.objectLike({
          Sid: 'ReadConfiguredSecrets',
          Action: 'secretsmanager:GetSecretValue',
          Resource: {
            'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':secretsmanager:eu-west-1:123456789012:secret:prod/shop/cdc-??????']],
          },
        }),
      ]),
    },
  });
  template.hasResourceProperties('AWS::IAM::Policy', {
    Roles: [{ Ref: Match.stringLikeRegexp('^StreamercrmTaskTaskRole') }],
    PolicyDocument: {
      Statement: Match.arrayEquals([
        Match.objectLike({ Sid: 'PutRecordsOnConfiguredStreams', Resource: streamArn(stack, 'customers-cdc') }),
        Match.objectLike({ Sid: 'CheckpointsReadWrite', Resource: ssmPrefixArn }),
        Match.objectLike({
          Sid: 'ReadConfiguredSecrets',
          Resource: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:crm-AbCdEf',
        }),
      ]),
    },
  });
});

test('admin Lambda role: reads SSM, marks checkpoints on drop, its secrets, and no CloudWatch or * resource', () => {
  template.hasResourceProperties('AWS::IAM::Policy', {
    Roles: [{ Ref: Match.stringLikeRegexp('^AdminordersFunctionServiceRole') }],
    PolicyDocument: {
      Statement: Match.arrayEquals([
        Match.objectLike({
          Sid: 'CheckpointsAndConfigRead',
          Action: 'ssm:GetParameter',
          Resource: [ssmPrefixArn, Match.anyValue()],
        }),
        Match.objectLike({ Sid: 'CheckpointsDropMark', Action: 'ssm:PutParameter', Resource: ssmPrefixArn }),
        Match.objectLike({ Sid: 'ReadConfiguredSecrets', Action: 'secretsmanager:GetSecretValue' }),
      ]),
    },
  });
  for (const policy of Object.values(template.findResources('AWS::IAM::Policy'))) {
    const text = JSON.stringify(policy);
    assert.ok(!text.includes('cloudwatch:PutMetricData'), 'no PutMetricData: the metrics are EMF lines');
  }
  template.hasResourceProperties('AWS::Lambda::Function', {
    Runtime: 'provided.al2023',
    Architectures: ['arm64'],
    Handler: 'bootstrap',
    VpcConfig: Match.objectLike({ SecurityGroupIds: Match.anyValue() }),
    Environment: {
      Variables: Match.objectLike({
        PG_CDC_CONFIG_SSM_PARAMETER: '/pg-cdc-to-kinesis-config/TestStack/orders',
        PG_CDC_METRICS_NAMESPACE: 'PgCdcToKinesis',
        PG_CDC_CHECKPOINT_PREFIX: '/pg-cdc-to-kinesis/TestStack',
      }),
    },
  });
  template.hasResourceProperties('AWS::SSM::Parameter', { Name: '/pg-cdc-to-kinesis-config/TestStack/orders', Value: ORDERS_CONFIG });
});

test('ECS: one task, stop-before-start deployments, circuit breaker, health check, drain time', () => {
  template.resourceCountIs('AWS::ECS::Service', 2);
  template.hasResourceProperties('AWS::ECS::Service', {
    DesiredCount: 1,
    LaunchType: 'FARGATE',
    DeploymentConfiguration: {
      MinimumHealthyPercent: 0,
      MaximumPercent: 100,
      DeploymentCircuitBreaker: { Enable: true, Rollback: true },
    },
    NetworkConfiguration: { AwsvpcConfiguration: Match.objectLike({ AssignPublicIp: 'DISABLED' }) },
  });
  template.hasResourceProperties('AWS::ECS::TaskDefinition', {
    ContainerDefinitions: [
      Match.objectLike({
        Command: ['--config', '/etc/pg-cdc-to-kinesis/configs.yml'],
        StopTimeout: 60,
        HealthCheck: Match.objectLike({ Command: ['CMD-SHELL', 'curl -fsS http://127.0.0.1:8080/healthz || exit 1'] }),
        LogConfiguration: Match.objectLike({ LogDriver: 'awslogs' }),
      }),
    ],
  });
  template.hasResourceProperties('AWS::ECS::TaskDefinition', {
    ContainerDefinitions: [Match.objectLike({ Command: ['--config', '/etc/pg-cdc-to-kinesis/configs-crm.yml'] })],
  });
  template.hasResourceProperties('AWS::ECS::Cluster', {
    ClusterSettings: [{ Name: 'containerInsights', Value: 'enabled' }],
  });
  template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
});

test('outputs name the admin functions and log groups the README points at', () => {
  for (const name of ['AdminFunctionNameorders', 'AdminLogGroupcrm', 'StreamerLogGroupcrm', 'AlarmTopicArn']) {
    template.hasOutput(name, {});
  }
});

test('EventBridge runs the health check every minute', () => {
  template.resourceCountIs('AWS::Events::Rule', 2);
  template.hasResourceProperties('AWS::Events::Rule', {
    ScheduleExpression: 'rate(1 minute)',
    Targets: [Match.objectLike({ Input: '{"action":"health"}' })],
  });
});

test('every alarm exists and notifies the topic', () => {
  const slots = ['orders_slot', 'payments_slot', 'customers_slot'];
  const bySlot = ['ReplicationLagBytes', 'ReplicationLagMs', 'SlotActive', 'CheckpointAgeSeconds', 'SlotRetainedWalBytes'];
  for (const slot of slots) {
    for (const metric of bySlot) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'PgCdcToKinesis',
        MetricName: metric,
        Dimensions: [{ Name: 'Slot', Value: slot }],
        AlarmActions: [{ Ref: Match.stringLikeRegexp('^AlarmsTopic') }],
      });
    }
  }
  template.hasResourceProperties('AWS::CloudWatch::Alarm', {
    MetricName: 'SlotActive',
    Dimensions: [{ Name: 'Slot', Value: 'orders_slot' }],
    TreatMissingData: 'breaching',
    ComparisonOperator: 'LessThanThreshold',
  });
  for (const stream of ['orders-cdc', 'customers-cdc']) {
    for (const metric of ['PutRecords.ThrottledRecords', 'PutRecords.FailedRecords']) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/Kinesis',
        MetricName: metric,
        Dimensions: [{ Name: 'StreamName', Value: stream }],
      });
    }
  }
  template.hasResourceProperties('AWS::CloudWatch::Alarm', {
    Namespace: 'ECS/ContainerInsights',
    MetricName: 'RunningTaskCount',
    TreatMissingData: 'breaching',
  });
  template.hasResourceProperties('AWS::CloudWatch::Alarm', { Namespace: 'AWS/Lambda', MetricName: 'Errors' });
  // Per slot 5, per stream 2, per service 2 (no task, memory), per admin function 2 (errors, throttles).
  template.resourceCountIs('AWS::CloudWatch::Alarm', slots.length * 5 + 2 * 2 + 2 * 2 + 2 * 2);
  template.resourceCountIs('AWS::SNS::Subscription', 0);
  Template.fromStack(buildStack({ alarmEmail: 'ops@example.com' }, false)).hasResourceProperties('AWS::SNS::Subscription', {
    Protocol: 'email',
    Endpoint: 'ops@example.com',
  });
});

test('dashboard shows lag, throughput and retries per slot', () => {
  const body = JSON.stringify(template.findResources('AWS::CloudWatch::Dashboard'));
  for (const needle of ['orders_slot: replication lag', 'RecordsPut', 'RecordsRetried', 'ThrottledRecords', 'customers_slot']) {
    assert.ok(body.includes(needle), `dashboard lacks ${needle}`);
  }
});

test('an existing VPC and security group are used, not created', () => {
  const t = Template.fromStack(
    buildStack(
      { network: { vpcId: 'vpc-0d0d0d0d0d0d0d0d0', subnetIds: ['subnet-0a0a0a0a0a0a0a0a0', 'subnet-0b0b0b0b0b0b0b0b0'], availabilityZones: ['eu-west-1a', 'eu-west-1b'], securityGroupId: 'sg-0c0c0c0c0c0c0c0c0' } },
      false,
    ),
  );
  t.resourceCountIs('AWS::EC2::VPC', 0);
  t.resourceCountIs('AWS::EC2::SecurityGroup', 0);
  t.hasResourceProperties('AWS::ECS::Service', {
    NetworkConfiguration: { AwsvpcConfiguration: Match.objectLike({ SecurityGroups: ['sg-0c0c0c0c0c0c0c0c0'], Subnets: ['subnet-0a0a0a0a0a0a0a0a0', 'subnet-0b0b0b0b0b0b0b0b0'] }) },
  });
  t.hasResourceProperties('AWS::Lambda::Function', { VpcConfig: { SecurityGroupIds: ['sg-0c0c0c0c0c0c0c0c0'], SubnetIds: ['subnet-0a0a0a0a0a0a0a0a0', 'subnet-0b0b0b0b0b0b0b0b0'] } });
});

test('a slot in two services is refused', () => {
  assert.throws(
    () =>
      buildStack(
        {
          services: [
            { name: 'a', configFile: 'configs.yml', config: parseConfig(ORDERS_CONFIG, 'configs.yml', {}) },
            { name: 'b', configFile: 'configs-b.yml', config: parseConfig(ORDERS_CONFIG, 'configs-b.yml', {}) },
          ],
          lambdaCodeDir: lambdaDir(),
        },
        false,
      ),
    /slot orders_slot appears in two services/,
  );
  void CRM_CONFIG;
});

test('cdk-nag AwsSolutions: no unacknowledged finding, and every acknowledgement has a reason', () => {
  const errors = Annotations.fromStack(stack).findError('*', Match.stringLikeRegexp('AwsSolutions-.*'));
  const warnings = Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('AwsSolutions-.*'));
  assert.deepEqual([...errors, ...warnings].map((e) => `${e.id}: ${String(e.entry.data)}`), []);
  const acks = (stack.templateOptions.metadata?.['cdk_nag']?.['rules_to_suppress'] ?? []) as { id: string; reason: string }[];
  assert.ok(acks.length >= 1);
  for (const ack of acks) assert.ok(ack.reason.length >= 40, `${ack.id}: the acknowledgement needs a real reason`);
});

test('cdk-nag with an image the stack builds: only ecr:GetAuthorizationToken has resource *, and only it is acknowledged', () => {
  const s = buildStack({ image: { directory: new URL('../../', import.meta.url).pathname } });
  const errors = Annotations.fromStack(s).findError('*', Match.stringLikeRegexp('AwsSolutions-.*'));
  assert.deepEqual(errors.map((e) => `${e.id}: ${String(e.entry.data)}`), []);
  const star = Object.values(Template.fromStack(s).findResources('AWS::IAM::Policy')).flatMap((p) =>
    (p['Properties']['PolicyDocument']['Statement'] as { Action: unknown; Resource: unknown }[]).filter((st) => st.Resource === '*'),
  );
  assert.ok(star.length >= 1);
  for (const st of star) assert.equal(st.Action, 'ecr:GetAuthorizationToken');
});

test('cdk-nag is live: an unencrypted, non-TLS topic added to the stack is reported', () => {
  const s = buildStack({}, false);
  new sns.Topic(s, 'Careless');
  Aspects.of(s).add(new AwsSolutionsChecks());
  const errors = Annotations.fromStack(s).findError('/TestStack/Careless/Resource', Match.stringLikeRegexp('AwsSolutions-SNS'));
  assert.ok(errors.length >= 1, 'cdk-nag reported nothing for an insecure topic');
});

test('every routed stream is created, alarmed and granted to the task that writes it', () => {
  const routed = `
replication_slots:
  - shop_slot:
      host: db.example.internal
      user: cdc
      db_name: shop
      kns_stream: shop-cdc
      tables:
        - match: public.orders
          stream: orders-only
        - match: public.audit_*
          skip: true
`;
  const s = buildStack(
    { services: [{ name: 'shop', configFile: 'configs.yml', config: parseConfig(routed, 'configs.yml', {}) }] },
    false,
  );
  const t = Template.fromStack(s);
  t.resourceCountIs('AWS::Kinesis::Stream', 2);
  t.hasResourceProperties('AWS::Kinesis::Stream', { Name: 'orders-only', StreamModeDetails: { StreamMode: 'ON_DEMAND' } });
  t.hasResourceProperties('AWS::IAM::Policy', {
    Roles: [{ Ref: Match.stringLikeRegexp('^StreamershopTaskTaskRole') }],
    PolicyDocument: {
      Statement: Match.arrayWith([
        Match.objectLike({
          Sid: 'PutRecordsOnConfiguredStreams',
          Action: ['kinesis:PutRecords', 'kinesis:DescribeStreamSummary', 'kinesis:ListShards'],
          Resource: [streamArn(s, 'shop-cdc'), streamArn(s, 'orders-only')],
        }),
      ]),
    },
  });
  t.hasResourceProperties('AWS::CloudWatch::Alarm', {
    Namespace: 'AWS/Kinesis',
    MetricName: 'PutRecords.ThrottledRecords',
    Dimensions: [{ Name: 'StreamName', Value: 'orders-only' }],
  });
  // With a name prefix, a routed stream must take it too.
  const unprefixed = routed.replace('kns_stream: shop-cdc', 'kns_stream: ${PG_CDC_STREAM_PREFIX:-}shop-cdc');
  assert.throws(
    () =>
      buildStack(
        {
          namePrefix: 'dev-',
          services: [{ name: 'shop', configFile: 'configs.yml', config: parseConfig(unprefixed, 'configs.yml', { PG_CDC_STREAM_PREFIX: 'dev-' }) }],
        },
        false,
      ),
    /the tables: entry's stream orders-only does not take it/,
  );
});

/**
 * What a first deployment in a real account needs and moto cannot show: alarms that
 * can notify, streams that do not block a redeploy, the CA bundle in the Lambda, the
 * IAM grants of the documented setups, VPC endpoints, Graviton, one namespace, the
 * alarms an operator expects, the placeholder Lambda, outputs and tags.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { parseConfig } from '../lib/config.ts';
import { RDS_CA_BUNDLE_PATH, RDS_CA_BUNDLE_REPO_FILE, RDS_CA_BUNDLE_SHA256, sha256File } from '../lib/ca-bundle.ts';
import { INTERFACE_ENDPOINTS } from '../lib/network.ts';
import type { ServiceSpec } from '../lib/pg-cdc-stack.ts';
import { buildStack, CRM_CONFIG, ORDERS_CONFIG } from './fixtures.ts';

const root = new URL('../../', import.meta.url).pathname;
const stack = buildStack({}, false);
const template = Template.fromStack(stack);

function service(name: string, yaml: string, env: Record<string, string> = {}): ServiceSpec {
  return { name, configFile: `configs-${name}.yml`, config: parseConfig(yaml, `configs-${name}.yml`, env) };
}

function statementsOf(t: Template, rolePrefix: string): Record<string, unknown>[] {
  const policies = Object.values(t.findResources('AWS::IAM::Policy')).filter((p) =>
    JSON.stringify(p['Properties']['Roles']).includes(rolePrefix),
  );
  return policies.flatMap((p) => p['Properties']['PolicyDocument']['Statement'] as Record<string, unknown>[]);
}

// --- Blocker 1: alarms that can notify --------------------------------------------

test('the alarm topic is encrypted with a customer-managed key whose policy lets CloudWatch alarms of this account use it', () => {
  const keys = template.findResources('AWS::KMS::Key');
  assert.equal(Object.keys(keys).length, 1);
  const [keyId, key] = Object.entries(keys)[0]!;
  assert.equal(key['Properties']['EnableKeyRotation'], true);
  const statements = key['Properties']['KeyPolicy']['Statement'] as Record<string, unknown>[];
  const cw = statements.find((s) => s['Sid'] === 'CloudWatchAlarmsUseTheKey');
  assert.ok(cw, JSON.stringify(statements));
  assert.deepEqual(cw['Principal'], { Service: 'cloudwatch.amazonaws.com' });
  assert.deepEqual(cw['Action'], ['kms:Decrypt', 'kms:GenerateDataKey*']);
  assert.equal(cw['Effect'], 'Allow');
  assert.deepEqual(cw['Condition'], {
    StringEquals: { 'aws:SourceAccount': '123456789012' },
    ArnLike: { 'aws:SourceArn': { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':cloudwatch:eu-west-1:123456789012:alarm:*']] } },
  });
  template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] } });
  assert.ok(!JSON.stringify(template.findResources('AWS::SNS::Topic')).includes('alias/aws/sns'));
});

test('the topic policy allows CloudWatch alarms of this account to publish, besides denying plain HTTP', () => {
  const policies = Object.values(template.findResources('AWS::SNS::TopicPolicy'));
  assert.equal(policies.length, 1);
  const statements = policies[0]!['Properties']['PolicyDocument']['Statement'] as Record<string, unknown>[];
  const allow = statements.find((s) => s['Sid'] === 'CloudWatchAlarmsPublish');
  assert.ok(allow, JSON.stringify(statements));
  assert.equal(allow['Effect'], 'Allow');
  assert.deepEqual(allow['Principal'], { Service: 'cloudwatch.amazonaws.com' });
  assert.equal(allow['Action'], 'sns:Publish');
  assert.match(JSON.stringify(allow['Resource']), /AlarmsTopic/);
  assert.deepEqual((allow['Condition'] as Record<string, unknown>)['StringEquals'], { 'aws:SourceAccount': '123456789012' });
  assert.match(JSON.stringify((allow['Condition'] as Record<string, unknown>)['ArnLike']), /:cloudwatch:eu-west-1:123456789012:alarm:\*/);
  assert.ok(statements.some((s) => s['Effect'] === 'Deny' && JSON.stringify(s['Condition']).includes('aws:SecureTransport')));
});

test("every alarm's alarm and OK actions are the topic", () => {
  const topicId = Object.keys(template.findResources('AWS::SNS::Topic'))[0]!;
  const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm'));
  assert.ok(alarms.length > 20);
  for (const a of alarms) {
    assert.deepEqual(a['Properties']['AlarmActions'], [{ Ref: topicId }], a['Properties']['AlarmName']);
    assert.deepEqual(a['Properties']['OKActions'], [{ Ref: topicId }], a['Properties']['AlarmName']);
  }
});

// --- Blocker 2: streams and a failed first deploy ---------------------------------

test('streams are deleted when the stack creation rolls back, kept on update or delete', () => {
  const streams = Object.values(template.findResources('AWS::Kinesis::Stream'));
  assert.equal(streams.length, 2);
  for (const s of streams) {
    assert.equal(s['DeletionPolicy'], 'RetainExceptOnCreate');
    assert.equal(s['UpdateReplacePolicy'], 'Retain');
  }
});

test('a name prefix names the streams and reaches the streamer through ${PG_CDC_STREAM_PREFIX}', () => {
  const yaml = ORDERS_CONFIG.replace(/kns_stream: orders-cdc/g, 'kns_stream: ${PG_CDC_STREAM_PREFIX:-}orders-cdc');
  const t = Template.fromStack(
    buildStack({ namePrefix: 'dev-', services: [service('orders', yaml, { PG_CDC_STREAM_PREFIX: 'dev-' })] }, false),
  );
  t.hasResourceProperties('AWS::Kinesis::Stream', { Name: 'dev-orders-cdc' });
  t.resourceCountIs('AWS::Kinesis::Stream', 1);
  t.hasResourceProperties('AWS::ECS::TaskDefinition', {
    ContainerDefinitions: [Match.objectLike({ Environment: Match.arrayWith([{ Name: 'PG_CDC_STREAM_PREFIX', Value: 'dev-' }]) })],
  });
  t.hasResourceProperties('AWS::Lambda::Function', {
    Environment: { Variables: Match.objectLike({ PG_CDC_STREAM_PREFIX: 'dev-' }) },
  });
  assert.throws(
    () => buildStack({ namePrefix: 'dev-', services: [service('orders', ORDERS_CONFIG)] }, false),
    /namePrefix dev- is set but kns_stream orders-cdc does not take it: write kns_stream: \$\{PG_CDC_STREAM_PREFIX:-\}orders-cdc/,
  );
});

// --- Blocker 3: the RDS CA bundle in the image and the Lambda ---------------------

test('the repository CA bundle is pinned and holds only Amazon RDS CA certificates', () => {
  const file = join(root, RDS_CA_BUNDLE_REPO_FILE);
  assert.equal(sha256File(file), RDS_CA_BUNDLE_SHA256);
  const pems = readFileSync(file, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  assert.ok(pems.length >= 100, `${pems.length} certificates`);
  for (const pem of pems) {
    const cert = new X509Certificate(pem);
    assert.match(cert.subject, /O=Amazon Web Services\\?, Inc\./);
    assert.match(cert.subject, /OU=Amazon RDS/);
    assert.match(cert.subject, /CN=Amazon RDS .*(CA|Root)/, cert.subject);
    assert.ok(cert.ca, `${cert.subject} is a CA certificate`);
  }
  const valid = pems.filter((p) => new Date(new X509Certificate(p).validTo) > new Date());
  assert.ok(valid.length >= 60, `${valid.length} valid certificates`);
  assert.equal(readFileSync(file, 'utf8').replace(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g, ''), '');
});

test('the admin Lambda gets the bundle at the path the image has, through a layer with the pinned file', () => {
  const layers = template.findResources('AWS::Lambda::LayerVersion');
  assert.equal(Object.keys(layers).length, 1);
  const [layerId, layer] = Object.entries(layers)[0]!;
  assert.deepEqual(layer['Properties']['CompatibleArchitectures'], ['arm64']);
  const functions = Object.values(template.findResources('AWS::Lambda::Function'));
  for (const fn of functions) assert.deepEqual(fn['Properties']['Layers'], [{ Ref: layerId }]);
  // Layers unpack under /opt: the layer's content has the file at the image's path.
  assert.ok(RDS_CA_BUNDLE_PATH.startsWith('/opt/'));
  const inLayer = join(stack.caBundle.contentDir, RDS_CA_BUNDLE_PATH.slice('/opt/'.length));
  assert.equal(sha256File(inLayer), RDS_CA_BUNDLE_SHA256);
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
  assert.ok(dockerfile.includes(`COPY ${RDS_CA_BUNDLE_REPO_FILE} ${RDS_CA_BUNDLE_PATH}`), 'the image copies the same file to the same path');
  assert.ok(dockerfile.includes(RDS_CA_BUNDLE_SHA256), 'the image build checks the same pin');
  assert.ok(!/curl[^\n]*global-bundle/.test(dockerfile), 'the image build downloads nothing');
});

test('a config whose sslrootcert the Lambda would not have is refused at synth; the bundle path is accepted', () => {
  const yaml = (path: string) => CRM_CONFIG.replace('db_name: crm', `db_name: crm\n      sslrootcert: ${path}`);
  assert.throws(
    () => buildStack({ services: [service('crm', yaml('/etc/ssl/certs/rds-global-bundle.pem'))] }, false),
    /slot customers_slot: sslrootcert \/etc\/ssl\/certs\/rds-global-bundle.pem is not in both the image and the admin Lambda.*use \/opt\/pg-cdc-to-kinesis\/rds-global-bundle.pem/,
  );
  buildStack({ services: [service('crm', yaml(RDS_CA_BUNDLE_PATH))] }, false);
});

// --- Blocker 4: iam_auth and customer-managed secret keys -------------------------

test('dbResourceId and dbUser grant rds-db:connect as exactly that user, to the task and the Lambda', () => {
  const yaml = CRM_CONFIG.replace('user: cdc', 'user: cdc\n      iam_auth: true');
  const t = Template.fromStack(
    buildStack(
      {
        services: [service('crm', yaml)],
        iamDbUser: { dbResourceId: 'db-ABCDEFGHIJKL', dbUser: 'cdc' },
        secretKmsKeyArns: ['arn:aws:kms:eu-west-1:123456789012:key/1111-2222'],
      },
      false,
    ),
  );
  for (const role of ['StreamercrmTaskTaskRole', 'AdmincrmFunctionServiceRole']) {
    const statements = statementsOf(t, role);
    const connect = statements.find((s) => s['Sid'] === 'RdsIamConnect');
    assert.ok(connect, `${role}: ${JSON.stringify(statements)}`);
    assert.equal(connect['Action'], 'rds-db:connect');
    assert.deepEqual(connect['Resource'], {
      'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':rds-db:eu-west-1:123456789012:dbuser:db-ABCDEFGHIJKL/cdc']],
    });
    const kms = statements.find((s) => s['Sid'] === 'DecryptConfiguredSecrets');
    assert.ok(kms, role);
    assert.equal(kms['Action'], 'kms:Decrypt');
    assert.equal(kms['Resource'], 'arn:aws:kms:eu-west-1:123456789012:key/1111-2222');
    assert.deepEqual(kms['Condition'], { StringEquals: { 'kms:ViaService': 'secretsmanager.eu-west-1.amazonaws.com' } });
  }
  assert.ok(!statementsOf(template, 'StreamerordersTaskTaskRole').some((s) => s['Sid'] === 'RdsIamConnect'), 'no grant unless asked');
  assert.throws(() => buildStack({ services: [service('crm', yaml)] }, false), /iam_auth is true but no rds-db:connect grant: deploy with -c dbResourceId=db-XXXX .* -c dbUser=cdc/);
  assert.throws(
    () => buildStack({ services: [service('crm', yaml)], iamDbUser: { dbResourceId: 'db-X', dbUser: 'other' } }, false),
    /signs in as cdc but -c dbUser=other/,
  );
});

// --- Risks: network, CPU, metrics -------------------------------------------------

test('vpcEndpoints: interface endpoints for every AWS API the stack calls, an S3 gateway, and no NAT', () => {
  const t = Template.fromStack(buildStack({ vpcEndpoints: true, availabilityZones: ['eu-west-1a', 'eu-west-1b'] }, true));
  const endpoints = Object.values(t.findResources('AWS::EC2::VPCEndpoint'));
  const names = endpoints.map((e) => JSON.stringify(e['Properties']['ServiceName']));
  for (const svc of ['kinesis-streams', 'ssm', 'secretsmanager', 'logs', 'ecr.api', 'ecr.dkr', 'sts']) {
    assert.ok(names.some((n) => n.includes(`.${svc}`)), `no ${svc} endpoint in ${names.join(' ')}`);
  }
  assert.ok(names.some((n) => n.includes('.s3')), 's3 gateway');
  assert.equal(endpoints.length, Object.keys(INTERFACE_ENDPOINTS).length + 1);
  for (const e of endpoints.filter((e) => e['Properties']['VpcEndpointType'] === 'Interface')) {
    assert.equal(e['Properties']['PrivateDnsEnabled'], true);
  }
  t.resourceCountIs('AWS::EC2::NatGateway', 0);
  t.hasResourceProperties('AWS::EC2::SecurityGroupIngress', { IpProtocol: 'tcp', FromPort: 443, ToPort: 443 });
  const nagErrors = Annotations.fromStack(buildStack({ vpcEndpoints: true, availabilityZones: ['eu-west-1a', 'eu-west-1b'] }, true)).findError(
    '*',
    Match.stringLikeRegexp('AwsSolutions-.*'),
  );
  assert.deepEqual(nagErrors.map((e) => String(e.entry.data)), []);
  const existing = { vpcId: 'vpc-0d0d0d0d0d0d0d0d0', subnetIds: ['subnet-0a0a0a0a0a0a0a0a0'], availabilityZones: ['eu-west-1a'] };
  assert.throws(() => buildStack({ vpcEndpoints: true, network: existing }, false), /needs -c routeTableIds/);
  const withRoutes = Template.fromStack(buildStack({ vpcEndpoints: true, network: { ...existing, routeTableIds: ['rtb-0e0e0e0e0e0e0e0e0'] } }, false));
  withRoutes.hasResourceProperties('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Gateway', RouteTableIds: ['rtb-0e0e0e0e0e0e0e0e0'] });
  template.resourceCountIs('AWS::EC2::VPCEndpoint', 0);
});

test('arm64 by default for the task and the Lambda; -c architecture=x86_64 keeps the old choice', () => {
  template.hasResourceProperties('AWS::ECS::TaskDefinition', { RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' } });
  template.hasResourceProperties('AWS::Lambda::Function', { Architectures: ['arm64'] });
  const x86 = Template.fromStack(buildStack({ architecture: 'x86_64' }, false));
  x86.hasResourceProperties('AWS::ECS::TaskDefinition', { RuntimePlatform: { CpuArchitecture: 'X86_64' } });
  x86.hasResourceProperties('AWS::Lambda::Function', { Architectures: ['x86_64'] });
  x86.hasResourceProperties('AWS::Lambda::LayerVersion', { CompatibleArchitectures: ['x86_64'] });
});

test('a Lambda build for the wrong CPU is refused, naming the build command', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pg-cdc-admin-elf-'));
  const elf = Buffer.alloc(64);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2; // 64-bit
  elf[5] = 1; // little-endian
  elf.writeUInt16LE(0x3e, 18); // x86-64
  writeFileSync(join(dir, 'bootstrap'), elf);
  assert.throws(() => buildStack({ lambdaCodeDir: dir }, false), /bootstrap is built for x86_64 but the stack runs the Lambda on arm64: run scripts\/build-lambda/);
  buildStack({ lambdaCodeDir: dir, architecture: 'x86_64' }, false);
});

test('one namespace: configs.yml decides, and a different -c metricsNamespace or a second file fails the synth', () => {
  const prod = ORDERS_CONFIG + 'metrics_namespace: Prod/Cdc\n';
  const t = Template.fromStack(buildStack({ services: [service('orders', prod)] }, false));
  t.hasResourceProperties('AWS::CloudWatch::Alarm', { Namespace: 'Prod/Cdc', MetricName: 'SlotActive' });
  t.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ PG_CDC_METRICS_NAMESPACE: 'Prod/Cdc' }) } });
  assert.ok(!JSON.stringify(t.findResources('AWS::CloudWatch::Alarm')).includes('"PgCdcToKinesis"'));
  buildStack({ services: [service('orders', prod)], metricsNamespace: 'Prod/Cdc' }, false);
  assert.throws(
    () => buildStack({ services: [service('orders', prod)], metricsNamespace: 'PgCdcToKinesis' }, false),
    /-c metricsNamespace=PgCdcToKinesis differs from metrics_namespace Prod\/Cdc in configs-orders.yml/,
  );
  assert.throws(() => buildStack({ metricsNamespace: 'Other' }, false), /differs from metrics_namespace PgCdcToKinesis/);
  assert.throws(
    () => buildStack({ services: [service('orders', prod), service('crm', CRM_CONFIG)] }, false),
    /metrics_namespace differs between the configs files \(configs-orders.yml: Prod\/Cdc, configs-crm.yml: PgCdcToKinesis\)/,
  );
});

// --- Alarms ------------------------------------------------------------------------

function alarmNamed(t: Template, name: string): Record<string, unknown> {
  const found = Object.values(t.findResources('AWS::CloudWatch::Alarm')).find((a) => a['Properties']['AlarmName'] === name);
  assert.ok(found, `no alarm named ${name}`);
  return found['Properties'] as Record<string, unknown>;
}

test('alarms have stable names and a runbook link in every description', () => {
  const t = Template.fromStack(buildStack({ runbookUrl: 'https://example.com/RUNBOOK.md' }, false));
  for (const a of Object.values(t.findResources('AWS::CloudWatch::Alarm'))) {
    assert.match(a['Properties']['AlarmName'] as string, /^TestStack-[A-Za-z]+(-[A-Za-z0-9_.-]+)?$/);
    assert.match(a['Properties']['AlarmDescription'] as string, /Runbook: https:\/\/example\.com\/RUNBOOK\.md#[a-z]+$/);
  }
  const anchors = readFileSync(join(root, 'RUNBOOK.md'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('#'))
    .map((l) => l.replace(/^#+\s*/, '').toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-'));
  const withRds = Template.fromStack(buildStack({ dbInstanceIdentifiers: ['shop-db'] }, false));
  for (const a of Object.values(withRds.findResources('AWS::CloudWatch::Alarm'))) {
    const anchor = (a['Properties']['AlarmDescription'] as string).replace(/.*#/, '');
    assert.ok(anchors.includes(anchor), `RUNBOOK.md has no section #${anchor}`);
  }
  alarmNamed(template, 'TestStack-SlotInactive-orders_slot');
  alarmNamed(template, 'TestStack-NoRunningTask-crm');
});

test('SlotRetainedWalBytes alarms at 10 GiB unless told otherwise', () => {
  const a = alarmNamed(template, 'TestStack-RetainedWal-orders_slot');
  assert.equal(a['MetricName'], 'SlotRetainedWalBytes');
  assert.equal(a['Threshold'], 10 * 1024 ** 3);
  const t = Template.fromStack(buildStack({ thresholds: { retainedWalBytes: 5e9 } }, false));
  assert.equal(alarmNamed(t, 'TestStack-RetainedWal-orders_slot')['Threshold'], 5e9);
});

test('RDS-side alarms only with dbInstanceIdentifier', () => {
  assert.ok(!JSON.stringify(template.findResources('AWS::CloudWatch::Alarm')).includes('AWS/RDS'));
  const t = Template.fromStack(buildStack({ dbInstanceIdentifiers: ['shop-db'] }, false));
  const lag = alarmNamed(t, 'TestStack-RdsSlotLag-shop-db');
  assert.equal(lag['Namespace'], 'AWS/RDS');
  assert.equal(lag['MetricName'], 'OldestReplicationSlotLag');
  assert.deepEqual(lag['Dimensions'], [{ Name: 'DBInstanceIdentifier', Value: 'shop-db' }]);
  const disk = alarmNamed(t, 'TestStack-RdsTransactionLogs-shop-db');
  assert.equal(disk['MetricName'], 'TransactionLogsDiskUsage');
});

test('ECS memory and Lambda throttles alarm; slot and task absence wait out a deployment', () => {
  const mem = alarmNamed(template, 'TestStack-Memory-orders');
  assert.equal(mem['Namespace'], 'AWS/ECS');
  assert.equal(mem['MetricName'], 'MemoryUtilization');
  assert.equal(mem['Threshold'], 80);
  const thr = alarmNamed(template, 'TestStack-AdminThrottles-orders');
  assert.equal(thr['Namespace'], 'AWS/Lambda');
  assert.equal(thr['MetricName'], 'Throttles');
  for (const name of ['TestStack-SlotInactive-orders_slot', 'TestStack-NoRunningTask-orders']) {
    const a = alarmNamed(template, name);
    // A deploy stops the old task (<= 2 min) before the new one starts (a few minutes).
    assert.ok((a['EvaluationPeriods'] as number) >= 10 && (a['DatapointsToAlarm'] as number) >= 10, name);
    assert.equal(a['Period'], 60);
    assert.equal(a['TreatMissingData'], 'breaching');
  }
});

// --- No Rust build for synth and diff; deploy refuses the placeholder ---------------

test('without a Lambda build, synth uses a marked placeholder and the template refuses to deploy', () => {
  const s = buildStack({ lambdaCodeDir: undefined }, false);
  const t = Template.fromStack(s);
  const rules = t.toJSON()['Rules'] as Record<string, { Assertions: { AssertDescription: string }[] }>;
  const rule = rules['AdminLambdaIsBuilt'];
  assert.ok(rule, `no refusal rule in ${Object.keys(rules).join(', ')}`);
  assert.match(rule.Assertions[0]!.AssertDescription, /placeholder .*: run scripts\/build-lambda, then cdk deploy again/);
  assert.ok(Annotations.fromStack(s).findWarning('*', Match.stringLikeRegexp('placeholder')).length >= 1);
  assert.ok(!('AdminLambdaIsBuilt' in (template.toJSON()['Rules'] ?? {})), 'a real build deploys');
});

// --- Outputs and tags ----------------------------------------------------------------

test('outputs: streams, security group, cluster, services, functions, dashboard', () => {
  const outputs = template.toJSON()['Outputs'] as Record<string, { Value: unknown }>;
  for (const name of [
    'StreamNameorderscdc',
    'StreamArnorderscdc',
    'StreamNamecustomerscdc',
    'StreamArncustomerscdc',
    'SecurityGroupId',
    'ClusterName',
    'ServiceNameorders',
    'ServiceNamecrm',
    'AdminFunctionNameorders',
    'AdminFunctionNamecrm',
    'DashboardUrl',
    'CheckpointPrefix',
  ]) {
    assert.ok(outputs[name], `no output ${name} in ${Object.keys(outputs).join(', ')}`);
  }
  assert.match(JSON.stringify(outputs['DashboardUrl']!.Value), /cloudwatch\/home\?region=eu-west-1#dashboards:name=TestStack/);
  template.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'TestStack' });
  assert.equal(outputs['CheckpointPrefix']!.Value, '/pg-cdc-to-kinesis/TestStack');
});

test('tags from context land on the resources and propagate to the tasks', () => {
  const t = Template.fromStack(buildStack({ tags: { team: 'data', 'cost-center': '42' } }, false));
  for (const type of ['AWS::Kinesis::Stream', 'AWS::Lambda::Function', 'AWS::ECS::Service', 'AWS::SNS::Topic', 'AWS::KMS::Key']) {
    t.hasResourceProperties(type, { Tags: Match.arrayWith([{ Key: 'team', Value: 'data' }]) });
  }
  t.hasResourceProperties('AWS::ECS::Service', { PropagateTags: 'SERVICE', EnableECSManagedTags: true });
});

// --- Checkpoints scoped to the stack -------------------------------------------------

test('checkpoint grants: the stack prefix plus any explicit checkpoint_parameter, exactly', () => {
  const yaml = CRM_CONFIG.replace('db_name: crm', 'db_name: crm\n      checkpoint_parameter: /team/crm/checkpoint');
  const t = Template.fromStack(buildStack({ services: [service('crm', yaml)], checkpointPrefix: '/cdc/prod' }, false));
  const rw = statementsOf(t, 'StreamercrmTaskTaskRole').find((s) => s['Sid'] === 'CheckpointsReadWrite');
  assert.deepEqual(rw?.['Resource'], [
    { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ssm:eu-west-1:123456789012:parameter/cdc/prod/*']] },
    { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ssm:eu-west-1:123456789012:parameter/team/crm/checkpoint']] },
  ]);
  t.hasResourceProperties('AWS::ECS::TaskDefinition', {
    ContainerDefinitions: [Match.objectLike({ Environment: Match.arrayWith([{ Name: 'PG_CDC_CHECKPOINT_PREFIX', Value: '/cdc/prod' }]) })],
  });
});

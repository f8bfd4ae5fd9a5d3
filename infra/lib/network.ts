/**
 * Where the streamer and the admin Lambda run: an existing VPC and security group
 * (by id, from context) or a new VPC with private subnets behind one NAT gateway.
 *
 * Owns only the network lookup or creation. It never opens inbound ports: both the
 * streamer and the Lambda only connect out (to PostgreSQL and to AWS APIs). The
 * database's own security group must allow the security group exposed here.
 */
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { RemovalPolicy } from 'aws-cdk-lib';
import { Construct } from 'constructs';

/** An existing network, by id. Offline-friendly: no lookup at synth time. */
export interface ExistingNetwork {
  /** The VPC's id, e.g. `vpc-0abc...`. */
  readonly vpcId: string;
  /** Private subnets (with a route to AWS APIs: NAT or VPC endpoints), at least one. */
  readonly subnetIds: readonly string[];
  /** The subnets' availability zones, in the same order. */
  readonly availabilityZones: readonly string[];
  /** A security group to use instead of a new one (outbound to PostgreSQL and AWS). */
  readonly securityGroupId?: string;
}

export interface NetworkProps {
  /** Use this network; unset creates a new VPC. */
  readonly existing?: ExistingNetwork;
  /** For a new VPC: its two availability zones, so synth needs no AZ lookup. */
  readonly availabilityZones?: readonly string[];
}

export class Network extends Construct {
  public readonly vpc: ec2.IVpc;
  /** Subnets for the Fargate tasks and the Lambda. */
  public readonly subnets: ec2.SubnetSelection;
  /** Attached to the Fargate tasks and the Lambda; allow it in the database's SG. */
  public readonly securityGroup: ec2.ISecurityGroup;

  constructor(scope: Construct, id: string, props: NetworkProps) {
    super(scope, id);
    const existing = props.existing;
    if (existing) {
      if (existing.subnetIds.length === 0 || existing.subnetIds.length !== existing.availabilityZones.length) {
        throw new Error('context subnetIds and availabilityZones must be non-empty lists of the same length');
      }
      this.vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
        vpcId: existing.vpcId,
        availabilityZones: [...existing.availabilityZones],
        privateSubnetIds: [...existing.subnetIds],
      });
      this.subnets = { subnets: existing.subnetIds.map((sid, i) => ec2.Subnet.fromSubnetId(this, `Subnet${i}`, sid)) };
    } else {
      const flowLogs = new logs.LogGroup(this, 'FlowLogs', {
        retention: logs.RetentionDays.ONE_MONTH,
        removalPolicy: RemovalPolicy.DESTROY,
      });
      this.vpc = new ec2.Vpc(this, 'Vpc', {
        ...(props.availabilityZones?.length ? { availabilityZones: [...props.availabilityZones] } : { maxAzs: 2 }),
        natGateways: 1,
        subnetConfiguration: [
          { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
          { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 22 },
        ],
        flowLogs: { all: { destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs) } },
      });
      this.subnets = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
    }
    this.securityGroup = existing?.securityGroupId
      ? ec2.SecurityGroup.fromSecurityGroupId(this, 'SecurityGroup', existing.securityGroupId)
      : new ec2.SecurityGroup(this, 'SecurityGroup', {
          vpc: this.vpc,
          description: 'pg-cdc-to-kinesis streamer and admin Lambda: outbound to PostgreSQL and AWS APIs only',
          allowAllOutbound: true,
        });
  }
}

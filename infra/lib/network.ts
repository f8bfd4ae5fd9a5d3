/**
 * Where the streamer and the admin Lambda run: an existing VPC and security group
 * (by id, from context) or a new VPC with private subnets behind one NAT gateway; and,
 * when asked (`vpcEndpoints`), the VPC endpoints that let private subnets without NAT
 * reach the AWS APIs the stack uses.
 *
 * Owns only the network lookup or creation. It never opens inbound ports on the
 * streamer or the Lambda: both only connect out (to PostgreSQL and to AWS APIs). The
 * endpoints accept HTTPS from the stack's security group only. The database's own
 * security group must allow the security group exposed here.
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
  /** The subnets' route tables, in the same order; needed for the S3 gateway endpoint. */
  readonly routeTableIds?: readonly string[];
}

export interface NetworkProps {
  /** Use this network; unset creates a new VPC. */
  readonly existing?: ExistingNetwork;
  /** For a new VPC: its two availability zones, so synth needs no AZ lookup. */
  readonly availabilityZones?: readonly string[];
  /**
   * Create interface endpoints (Kinesis, SSM, Secrets Manager, CloudWatch Logs, ECR
   * api and dkr, STS) and an S3 gateway endpoint, for subnets without NAT. A new VPC
   * then has isolated subnets and no NAT gateway.
   */
  readonly vpcEndpoints?: boolean;
}

/**
 * The interface endpoints and who needs them: the task pulls its image (ECR api and
 * dkr, with the layers from S3), writes logs (CloudWatch Logs), puts records
 * (Kinesis), keeps checkpoints (SSM) and reads secrets (Secrets Manager); the Lambda
 * reads its config and checkpoints (SSM) and secrets; STS serves SDKs configured for
 * regional STS (assumed roles, web identity).
 */
export const INTERFACE_ENDPOINTS: Readonly<Record<string, ec2.InterfaceVpcEndpointAwsService>> = {
  Kinesis: ec2.InterfaceVpcEndpointAwsService.KINESIS_STREAMS,
  Ssm: ec2.InterfaceVpcEndpointAwsService.SSM,
  SecretsManager: ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
  Logs: ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
  EcrApi: ec2.InterfaceVpcEndpointAwsService.ECR,
  EcrDocker: ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
  Sts: ec2.InterfaceVpcEndpointAwsService.STS,
};

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
      const routeTables = existing.routeTableIds ?? [];
      if (routeTables.length > 0 && routeTables.length !== existing.subnetIds.length) {
        throw new Error('context routeTableIds must list one route table per subnet of subnetIds, in the same order');
      }
      if (props.vpcEndpoints && routeTables.length === 0) {
        throw new Error(
          'vpcEndpoints with an existing VPC needs -c routeTableIds=rtb-1,rtb-2 (the route tables of subnetIds, in the same order) for the S3 gateway endpoint that image pulls use',
        );
      }
      this.vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
        vpcId: existing.vpcId,
        availabilityZones: [...existing.availabilityZones],
        privateSubnetIds: [...existing.subnetIds],
        ...(routeTables.length ? { privateSubnetRouteTableIds: [...routeTables] } : {}),
      });
      this.subnets = {
        subnets: existing.subnetIds.map((subnetId, i) =>
          ec2.Subnet.fromSubnetAttributes(this, `Subnet${i}`, {
            subnetId,
            availabilityZone: existing.availabilityZones[i]!,
            ...(routeTables[i] ? { routeTableId: routeTables[i] } : {}),
          }),
        ),
      };
    } else {
      const flowLogs = new logs.LogGroup(this, 'FlowLogs', {
        retention: logs.RetentionDays.ONE_MONTH,
        removalPolicy: RemovalPolicy.DESTROY,
      });
      const isolated = props.vpcEndpoints === true;
      this.vpc = new ec2.Vpc(this, 'Vpc', {
        ...(props.availabilityZones?.length ? { availabilityZones: [...props.availabilityZones] } : { maxAzs: 2 }),
        natGateways: isolated ? 0 : 1,
        subnetConfiguration: isolated
          ? [{ name: 'private', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 22 }]
          : [
              { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
              { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 22 },
            ],
        flowLogs: { all: { destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs) } },
      });
      this.subnets = { subnetType: isolated ? ec2.SubnetType.PRIVATE_ISOLATED : ec2.SubnetType.PRIVATE_WITH_EGRESS };
    }
    this.securityGroup = existing?.securityGroupId
      ? ec2.SecurityGroup.fromSecurityGroupId(this, 'SecurityGroup', existing.securityGroupId)
      : new ec2.SecurityGroup(this, 'SecurityGroup', {
          vpc: this.vpc,
          description: 'pg-cdc-to-kinesis streamer and admin Lambda: outbound to PostgreSQL and AWS APIs only',
          allowAllOutbound: true,
        });
    if (props.vpcEndpoints) this.addEndpoints();
  }

  private addEndpoints(): void {
    const endpointSg = new ec2.SecurityGroup(this, 'EndpointSecurityGroup', {
      vpc: this.vpc,
      description: 'pg-cdc-to-kinesis VPC endpoints: HTTPS from the streamer and admin Lambda security group',
      allowAllOutbound: false,
    });
    endpointSg.addIngressRule(this.securityGroup, ec2.Port.tcp(443), 'HTTPS from pg-cdc-to-kinesis');
    for (const [id, service] of Object.entries(INTERFACE_ENDPOINTS)) {
      this.vpc.addInterfaceEndpoint(`${id}Endpoint`, {
        service,
        subnets: this.subnets,
        securityGroups: [endpointSg],
        privateDnsEnabled: true,
        open: false,
      });
    }
    // ECR keeps image layers in S3.
    this.vpc.addGatewayEndpoint('S3Endpoint', { service: ec2.GatewayVpcEndpointAwsService.S3, subnets: [this.subnets] });
  }
}

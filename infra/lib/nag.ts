/**
 * cdk-nag acknowledgements: each AwsSolutions finding this app accepts, with the
 * reason, limited (`appliesTo`) to the exact policy or resource pattern it is about.
 * Anything not listed here fails `scripts/test-infra`.
 *
 * Owns only the reasons. A new finding must be fixed, or acknowledged here with a
 * reason a reviewer can check.
 */
import type { IConstruct } from 'constructs';
import { Stack } from 'aws-cdk-lib';
import { NagSuppressions } from 'cdk-nag';

/**
 * A task that pulls an image the stack built (an ECR asset) gets
 * `ecr:GetAuthorizationToken` on `*` in its execution role: the action has no
 * resource ARNs. Acknowledged on that role's policy only, never stack-wide.
 */
export function acknowledgeEcrAuthorization(executionRole: IConstruct): void {
  NagSuppressions.addResourceSuppressions(
    executionRole,
    [
      {
        id: 'AwsSolutions-IAM5',
        reason:
          'ecr:GetAuthorizationToken has no resource ARNs, so ECS needs it on "*" to pull the image the stack built; every other ECR action in this policy names the asset repository.',
        appliesTo: ['Resource::*'],
      },
    ],
    true,
  );
}

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** `checkpointPrefix` is the stack's checkpoint prefix, e.g. `/pg-cdc-to-kinesis/MyStack`. */
export function acknowledgeNagFindings(stack: Stack, checkpointPrefix: string): void {
  const prefix = escapeRegex(checkpointPrefix.replace(/^\//, '').replace(/\/$/, ''));
  NagSuppressions.addStackSuppressions(stack, [
    {
      id: 'AwsSolutions-IAM4',
      reason:
        'The admin Lambda runs in the VPC: AWSLambdaVPCAccessExecutionRole (its ENIs) and AWSLambdaBasicExecutionRole (its log streams) are the documented minimum for that.',
      appliesTo: [
        'Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole',
        'Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole',
      ],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: `Checkpoint parameters are created at run time, one per slot, all under the stack's prefix ${checkpointPrefix}/: that prefix is the narrowest fixed resource.`,
      appliesTo: [{ regex: `/^Resource::arn:<AWS::Partition>:ssm:.*:parameter\\/${prefix}\\/\\*$/` }],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason:
        'Secrets Manager appends "-" and six random characters to a secret name in its ARN; "-??????" matches exactly that suffix of the configured secret.',
      appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:secretsmanager:.*-\\?\\?\\?\\?\\?\\?$/' }],
    },
    {
      id: 'AwsSolutions-ECS2',
      reason:
        'The container environment holds only RUST_LOG and the operator-chosen values for ${VAR} in configs.yml; credentials come from Secrets Manager (secret: in configs.yml), never from the environment.',
    },
  ]);
}

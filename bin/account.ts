import { DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { cloudformationClient, s3Client, sfnClient, ssmClient } from '../lambdas/shared/clients';
import { CliError, EXIT } from './terminal';

/**
 * The deployed Understudy stack as the operator commands see it: its state machine and runs bucket from
 * the CloudFormation outputs (lib/understudy-stack.ts), and the SDK clients of the default credential
 * chain and region. The same code runs against AWS and against the sandbox (whose client plugin answers
 * the very same commands).
 */

export const DEFAULT_STACK = 'Understudy';

export interface StackInfo {
  readonly stackName: string;
  readonly stateMachineArn: string;
  readonly runsBucket: string;
  /** Where the stack keeps each target's configuration (`<prefix>/targets/<name>`). */
  readonly parameterPrefix: string;
  readonly region: string;
  /** The fleet machine (`replace --group`); stacks deployed before fleets existed have none. */
  readonly fleetStateMachineArn?: string;
}

export const operatorClients = () => ({
  sfn: sfnClient(),
  s3: s3Client(),
  ssm: ssmClient(),
  cloudformation: cloudformationClient(),
});
export type OperatorClients = ReturnType<typeof operatorClients>;

/** lib/understudy-stack.ts names the prefix after the stack, so the CLI derives it the same way. */
export const parameterPrefixOf = (stackName: string): string => `/understudy/${stackName}`;

const CREDENTIAL_ERRORS =
  /^(CredentialsProviderError|ExpiredToken|ExpiredTokenException|UnrecognizedClientException|InvalidClientTokenId|InvalidSignatureException|SignatureDoesNotMatch|AccessDenied|AccessDeniedException|UnauthorizedOperation|TokenRefreshRequired)$/;

/**
 * An SDK failure as one line with exit code 3: what failed and what to check. Errors that are already
 * the CLI's own pass through.
 */
export const awsFailure = (what: string, error: unknown): CliError => {
  if (error instanceof CliError) return error;
  const name = error instanceof Error ? error.name : 'Error';
  const message = error instanceof Error ? error.message : String(error);
  const hint = CREDENTIAL_ERRORS.test(name)
    ? ' (check the credentials: AWS_PROFILE, `aws sso login`, or the role you assumed)'
    : /region/i.test(message)
      ? ' (set AWS_REGION or a region in the profile)'
      : '';
  return new CliError(EXIT.aws, `${what}: ${name}: ${message}${hint}`);
};

export const describeStack = async (clients: OperatorClients, stackName: string): Promise<StackInfo> => {
  let outputs: Record<string, string>;
  try {
    const answer = await clients.cloudformation.send(new DescribeStacksCommand({ StackName: stackName }));
    const stack = answer.Stacks?.[0];
    outputs = Object.fromEntries(
      (stack?.Outputs ?? []).flatMap((o) =>
        o.OutputKey && o.OutputValue !== undefined ? [[o.OutputKey, o.OutputValue]] : [],
      ),
    );
  } catch (error) {
    if ((error as Error)?.name === 'ValidationError') {
      throw new CliError(
        EXIT.aws,
        `stack ${stackName} not found in this account and region: deploy it (npx cdk deploy) or name it with --stack`,
      );
    }
    throw awsFailure(`reading the outputs of stack ${stackName}`, error);
  }
  const stateMachineArn = outputs.StateMachineArn;
  const runsBucket = outputs.RunsBucketName;
  if (!stateMachineArn || !runsBucket) {
    throw new CliError(
      EXIT.aws,
      `stack ${stackName} has no StateMachineArn/RunsBucketName outputs: is it an Understudy stack? Redeploy it with this version`,
    );
  }
  // The ARN carries the region the stack lives in, whatever the caller's default is.
  const region = stateMachineArn.split(':')[3] ?? '';
  return {
    stackName,
    stateMachineArn,
    runsBucket,
    parameterPrefix: parameterPrefixOf(stackName),
    region,
    ...(outputs.FleetStateMachineArn ? { fleetStateMachineArn: outputs.FleetStateMachineArn } : {}),
  };
};

export const consoleLink = (region: string, executionArn: string): string =>
  `https://${region}.console.aws.amazon.com/states/home?region=${region}#/v2/executions/details/${executionArn}`;

import { ArnFormat, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as ssm from 'aws-cdk-lib/aws-ssm';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { parameterNames, runKeys } from '../lambdas/shared/constants';
import { acknowledgeWildcards, type JustifiedStatement } from './nag-findings';

/** The top-level folders of the runs bucket the CLI reads: run records and locks, never `tls/`. */
export const OPERATOR_PREFIXES = [
  `${runKeys.record('t', 'e').split('/')[0]}/`,
  `${runKeys.lock('t').split('/')[0]}/`,
] as const;

export interface OperatorPolicyProps {
  /** The replacement workflow the CLI starts and follows. */
  readonly stateMachine: sfn.StateMachine;
  /** Run records (`runs/`) and locks (`locks/`), which `status` and `history` read. */
  readonly runsBucket: s3.IBucket;
  /** Each target's configuration parameter: `replace` checks the target is deployed. */
  readonly targetParameters: readonly ssm.IStringParameter[];
  /** The stack's parameter prefix, under which a run waiting for approval parks its task token. */
  readonly parameterPrefix: string;
  /** The fleet workflow `replace --group` starts and follows. */
  readonly fleetStateMachine: sfn.StateMachine;
}

export const operatorStatements = (scope: Construct, props: OperatorPolicyProps): JustifiedStatement[] => {
  const stack = Stack.of(scope);
  const { stateMachine, runsBucket } = props;
  const executions = stack.formatArn({
    service: 'states',
    resource: 'execution',
    resourceName: `${stateMachine.stateMachineName}:*`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
  const fleetExecutions = stack.formatArn({
    service: 'states',
    resource: 'execution',
    resourceName: `${props.fleetStateMachine.stateMachineName}:*`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
  const approvals = stack.formatArn({
    service: 'ssm',
    resource: 'parameter',
    resourceName: parameterNames(props.parameterPrefix).approval('*').replace(/^\//, ''),
    arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
  });
  return [
    {
      // `approve|reject <target>`: the token a waiting run parked, then the answer to that run's task.
      statement: new iam.PolicyStatement({
        sid: 'ReadApprovalRequests',
        actions: ['ssm:GetParameter'],
        resources: [approvals],
      }),
      wildcardReason:
        'one approval request per target under the stack prefix, named after the target at run time',
    },
    {
      statement: new iam.PolicyStatement({
        sid: 'AnswerApprovals',
        actions: ['states:SendTaskSuccess', 'states:SendTaskFailure'],
        resources: [stateMachine.stateMachineArn],
      }),
    },
    {
      statement: new iam.PolicyStatement({
        sid: 'ReadStackOutputs',
        actions: ['cloudformation:DescribeStacks'],
        // The stack id's last part is a UUID CloudFormation assigns at creation.
        resources: [stack.stackId],
      }),
    },
    {
      statement: new iam.PolicyStatement({
        sid: 'CheckTargetDeployed',
        actions: ['ssm:GetParameter'],
        resources: props.targetParameters.map((p) => p.parameterArn),
      }),
    },
    {
      statement: new iam.PolicyStatement({
        sid: 'StartAndListRuns',
        actions: ['states:StartExecution', 'states:ListExecutions'],
        resources: [stateMachine.stateMachineArn],
      }),
    },
    {
      // `replace --group`: one fleet execution, followed by its own and its items' DescribeExecution.
      statement: new iam.PolicyStatement({
        sid: 'StartFleets',
        actions: ['states:StartExecution'],
        resources: [props.fleetStateMachine.stateMachineArn],
      }),
    },
    {
      statement: new iam.PolicyStatement({
        sid: 'FollowFleets',
        actions: ['states:DescribeExecution'],
        resources: [fleetExecutions],
      }),
      wildcardReason: 'executions of the one fleet state machine, named when the CLI starts them; read only',
    },
    {
      statement: new iam.PolicyStatement({
        sid: 'FollowRuns',
        actions: ['states:DescribeExecution', 'states:GetExecutionHistory'],
        resources: [executions],
      }),
      wildcardReason:
        'executions of this one state machine, named when the CLI or a trigger starts them; DescribeExecution and GetExecutionHistory only read them',
    },
    {
      statement: new iam.PolicyStatement({
        sid: 'ListRunRecordsAndLocks',
        actions: ['s3:ListBucket'],
        resources: [runsBucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': OPERATOR_PREFIXES.map((p) => `${p}*`) } },
      }),
    },
    {
      statement: new iam.PolicyStatement({
        sid: 'ReadRunRecordsAndLocks',
        actions: ['s3:GetObject'],
        resources: OPERATOR_PREFIXES.map((p) => runsBucket.arnForObjects(`${p}*`)),
      }),
      wildcardReason:
        'run records and locks are keyed by target and execution name at run time; read-only, and the certificate transfers (tls/) stay out of reach',
    },
  ];
};

/**
 * What an on-call SRE needs to run the CLI (`replace`, `rollback`, `status`, `history`) against this
 * stack, and nothing more: a managed policy the user attaches to their own role, since who operates
 * Understudy is the account's decision, not the stack's. Read-only except for starting an execution;
 * stopping one, reading the certificate transfers or changing a lock stays with the workflow.
 */
export class OperatorPolicy extends Construct {
  readonly policy: iam.ManagedPolicy;

  constructor(scope: Construct, id: string, props: OperatorPolicyProps) {
    super(scope, id);
    const justified = operatorStatements(this, props);
    const stackName = Stack.of(this).stackName;
    this.policy = new iam.ManagedPolicy(this, 'Policy', {
      managedPolicyName: `${stackName}-operator`,
      description: `Run the Understudy CLI against stack ${stackName}: start and follow replacements and rollbacks, read run records and locks`,
      statements: justified.map((j) => j.statement),
    });
    acknowledgeWildcards(this.policy, justified);
  }
}

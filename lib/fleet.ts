import { join } from 'node:path';
import { ArnFormat, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { executionAlarms } from './execution-alarms';
import { acknowledgeWildcards, type JustifiedStatement } from './nag-findings';

export interface FleetProps {
  /** The single-target workflow each item of the fleet runs (`${ReplaceStateMachineArn}`). */
  readonly replaceStateMachine: sfn.IStateMachine;
  /** Its fixed name, for the ARNs of its executions. */
  readonly replaceStateMachineName: string;
  /** The notifications topic: the failed, timed-out and aborted fleet execution alarms go there. */
  readonly topic: sns.ITopic;
}

/** Fleet waves, in Amazon States Language (a Distributed Map of replace executions). */
export const FLEET_DEFINITION_PATH = join(__dirname, '..', 'statemachine', 'fleet.asl.json');

/**
 * The fleet workflow: replaces a group of targets in waves. A Standard state machine built from the ASL
 * file, logging without execution data (inputs carry target settings), traced with X-Ray, with alarms
 * on fleet executions that fail, time out or are aborted.
 */
export class Fleet extends Construct {
  readonly stateMachine: sfn.StateMachine;
  readonly logGroup: logs.LogGroup;
  readonly alarms: readonly cloudwatch.Alarm[];

  constructor(scope: Construct, id: string, props: FleetProps) {
    super(scope, id);
    const stack = Stack.of(this);
    // Named, so the role can be granted its own ARN (child workflow executions) without a cycle.
    const stateMachineName = `${stack.stackName}-Fleet`;

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName,
      definitionBody: sfn.DefinitionBody.fromFile(FLEET_DEFINITION_PATH),
      definitionSubstitutions: { ReplaceStateMachineArn: props.replaceStateMachine.stateMachineArn },
      stateMachineType: sfn.StateMachineType.STANDARD,
      tracingEnabled: true,
      logs: { destination: this.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });

    const states = (resource: string, resourceName: string): string =>
      stack.formatArn({
        service: 'states',
        resource,
        resourceName,
        arnFormat: ArnFormat.COLON_RESOURCE_NAME,
      });
    const statements: JustifiedStatement[] = [
      // startExecution.sync:2 starts the replace run and follows it. No StopExecution on replace runs, on
      // purpose: when the Map Run fails (tolerance exceeded) or the fleet is stopped, Step Functions would
      // stop the in-flight replace runs wherever they are (between Switch and Probe, say), skipping their
      // rollback and leaving the lock held. Denied that call, each run goes on and ends safe by itself.
      {
        statement: new iam.PolicyStatement({
          sid: 'StartReplace',
          actions: ['states:StartExecution'],
          resources: [props.replaceStateMachine.stateMachineArn],
        }),
      },
      {
        statement: new iam.PolicyStatement({
          sid: 'FollowReplace',
          actions: ['states:DescribeExecution'],
          resources: [states('execution', `${props.replaceStateMachineName}:*`)],
        }),
        wildcardReason: 'the replace executions a fleet starts are named per run: known only at run time',
      },
      // .sync learns that the run ended through this managed rule, which Step Functions creates.
      {
        statement: new iam.PolicyStatement({
          sid: 'SyncEvents',
          actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
          resources: [
            stack.formatArn({
              service: 'events',
              resource: 'rule',
              resourceName: 'StepFunctionsGetEventsForStepFunctionsExecutionRule',
            }),
          ],
        }),
      },
      // A Distributed Map runs each item as a child workflow execution of this very state machine.
      {
        statement: new iam.PolicyStatement({
          sid: 'StartChildWorkflows',
          actions: ['states:StartExecution'],
          resources: [states('stateMachine', stateMachineName)],
        }),
      },
      {
        statement: new iam.PolicyStatement({
          sid: 'FollowChildWorkflows',
          actions: ['states:DescribeExecution', 'states:StopExecution'],
          resources: [states('execution', `${stateMachineName}/*`)],
        }),
        wildcardReason: 'child workflow executions are named by the Map Run: known only at run time',
      },
    ];
    for (const { statement } of statements) this.stateMachine.addToRolePolicy(statement);

    const defaultPolicy = this.stateMachine.role.node.findChild('DefaultPolicy');
    acknowledgeWildcards(defaultPolicy, statements);
    Validations.of(defaultPolicy).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'X-Ray trace writes and CloudWatch Logs delivery management added by CDK for tracing and logging have no ' +
        'resource-level permissions',
    });

    // As the replace machine's alarms (lib/orchestrator.ts). The Map's child workflow executions publish
    // under a labelled ARN (`<machine>/<label>`), so these count fleet runs only: a target that failed
    // within the tolerance does not fire them (its own run's alarm and outcome message do).
    this.alarms = executionAlarms(this, this.stateMachine, props.topic, {
      failed: 'failed (more targets failed than it tolerates, so no further wave started)',
      description: (what) =>
        `An Understudy fleet execution ${what}: open it in the Step Functions console; each target's run reports its own outcome on the topic.`,
    });
  }
}

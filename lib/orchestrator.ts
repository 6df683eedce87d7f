import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { executionAlarms } from './execution-alarms';
import { NOTIFICATION_TOPIC_PLACEHOLDER, placeholderFor, STEPS, type StepName } from './steps';

export interface OrchestratorProps {
  /** Every step's function; those the definition invokes become its `${<Step>FunctionArn}` substitutions. */
  readonly functions: Readonly<Record<StepName, lambda.IFunction>>;
  /**
   * The notifications topic: the AnnounceOutcome state publishes each run's outcome there (its
   * `${NotificationTopicArn}`), and the failed, timed-out and aborted execution alarms go there.
   */
  readonly topic: sns.ITopic;
  /** The key the topic is encrypted with: a publisher needs it through SNS. */
  readonly topicKey: kms.IKey;
}

/** The workflow, in Amazon States Language. */
const DEFINITION_PATH = join(__dirname, '..', 'statemachine', 'replace.asl.json');

/** The `${Name}` placeholders a definition file uses, sorted. */
export const placeholdersIn = (definition: string): string[] =>
  [...new Set([...definition.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1] ?? ''))].sort();

/**
 * The replacement workflow: a Standard state machine built from the ASL file, logging every event
 * without execution data (inputs carry task tokens and target settings), traced with X-Ray, with
 * alarms on executions that fail, time out or are aborted.
 */
export class Orchestrator extends Construct {
  readonly stateMachine: sfn.StateMachine;
  readonly logGroup: logs.LogGroup;
  readonly alarms: readonly cloudwatch.Alarm[];

  constructor(scope: Construct, id: string, props: OrchestratorProps) {
    super(scope, id);
    const invoked = STEPS.filter((s) => s.invokedByStateMachine).map((s) => s.name);
    const substitutions: Record<string, string> = {
      ...Object.fromEntries(invoked.map((step) => [placeholderFor(step), props.functions[step].functionArn])),
      [NOTIFICATION_TOPIC_PLACEHOLDER]: props.topic.topicArn,
    };
    checkPlaceholders(placeholdersIn(readFileSync(DEFINITION_PATH, 'utf8')), Object.keys(substitutions));

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      // A fixed name, so that users (and the README) can find the machine to start in the console.
      stateMachineName: `${Stack.of(this).stackName}-Replace`,
      definitionBody: sfn.DefinitionBody.fromFile(DEFINITION_PATH),
      definitionSubstitutions: substitutions,
      stateMachineType: sfn.StateMachineType.STANDARD,
      tracingEnabled: true,
      logs: { destination: this.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });

    // A file-based definition grants nothing. One statement on the unqualified ARNs the definition names;
    // `grantInvoke` would also allow every version and alias (`<arn>:*`), which the workflow never calls.
    this.stateMachine.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'InvokeStepFunctions',
        actions: ['lambda:InvokeFunction'],
        resources: invoked.map((step) => props.functions[step].functionArn),
      }),
    );

    // AnnounceOutcome publishes the outcome itself (see the state's comment for why not a function).
    this.stateMachine.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'AnnounceOutcome',
        actions: ['sns:Publish'],
        resources: [props.topic.topicArn],
      }),
    );
    this.stateMachine.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'EncryptOutcome',
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: [props.topicKey.keyArn],
        conditions: {
          StringEquals: { 'kms:ViaService': `sns.${Stack.of(this).region}.${Stack.of(this).urlSuffix}` },
        },
      }),
    );

    // Only the statements CDK wrote for tracing and logging are acknowledged, on the policy that holds
    // them: a wildcard added anywhere else under the role is still reported.
    Validations.of(this.stateMachine.role.node.findChild('DefaultPolicy')).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'X-Ray trace writes and CloudWatch Logs delivery management (logs:CreateLogDelivery and friends) added by CDK ' +
        'for tracing and logging have no resource-level permissions',
    });

    this.alarms = executionAlarms(this, this.stateMachine, props.topic, {
      failed: 'failed',
      description: (what) =>
        `An Understudy execution ${what}: open the execution in the Step Functions console.`,
    });
  }
}

/**
 * Fails synth when the placeholders the definition `used` and those the step table `supplied` disagree,
 * in either direction.
 */
export const checkPlaceholders = (used: readonly string[], supplied: readonly string[]): void => {
  const missing = used.filter((p) => !supplied.includes(p));
  const unused = supplied.filter((p) => !used.includes(p));
  const problems = [
    ...missing.map(
      (p) =>
        `statemachine/replace.asl.json uses \${${p}} but no step supplies it: add the step to lib/steps.ts ` +
        '(with its lambdas/<step>/handler.ts) or remove the placeholder',
    ),
    ...unused.map(
      (p) =>
        `statemachine/replace.asl.json never uses \${${p}}: reference the function in the definition or mark ` +
        'the step invokedByStateMachine: false in lib/steps.ts',
    ),
  ];
  if (problems.length > 0) throw new Error(problems.join('\n'));
};

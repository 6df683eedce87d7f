import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { placeholderFor, STEPS, type StepName } from './steps';

export interface OrchestratorProps {
  /** Every step's function; those the definition invokes become its `${<Step>FunctionArn}` substitutions. */
  readonly functions: Readonly<Record<StepName, lambda.IFunction>>;
  /** Where the failed, timed-out and aborted execution alarms go. */
  readonly alarmTopic: sns.ITopic;
  /**
   * The Amazon States Language file of the workflow.
   * @default - the repository's `statemachine/replace.asl.json`
   */
  readonly definitionPath?: string;
  /**
   * Retention of the execution log group.
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: logs.RetentionDays;
}

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
    const definitionPath = props.definitionPath ?? join(__dirname, '..', 'statemachine', 'replace.asl.json');
    const invoked = STEPS.filter((s) => s.invokedByStateMachine).map((s) => s.name);
    const substitutions = Object.fromEntries(
      invoked.map((step) => [placeholderFor(step), props.functions[step].functionArn]),
    );
    checkPlaceholders(definitionPath, Object.keys(substitutions));

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      definitionBody: sfn.DefinitionBody.fromFile(definitionPath),
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

    const alarmOn = (name: string, metric: cloudwatch.Metric, what: string): cloudwatch.Alarm => {
      const alarm = new cloudwatch.Alarm(this, name, {
        metric,
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: `An Understudy execution ${what}: open the execution in the Step Functions console.`,
      });
      alarm.addAlarmAction(new actions.SnsAction(props.alarmTopic));
      return alarm;
    };
    const period = { period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM };
    this.alarms = [
      alarmOn('ExecutionsFailed', this.stateMachine.metricFailed(period), 'failed'),
      alarmOn('ExecutionsTimedOut', this.stateMachine.metricTimedOut(period), 'timed out'),
      alarmOn('ExecutionsAborted', this.stateMachine.metricAborted(period), 'was aborted'),
    ];
  }
}

/** Fails synth when the definition and the step table disagree, in either direction. */
const checkPlaceholders = (definitionPath: string, supplied: readonly string[]): void => {
  const used = placeholdersIn(readFileSync(definitionPath, 'utf8'));
  const missing = used.filter((p) => !supplied.includes(p));
  const unused = supplied.filter((p) => !used.includes(p));
  const problems = [
    ...missing.map(
      (p) =>
        `${definitionPath} uses \${${p}} but no step supplies it: add the step to lib/steps.ts ` +
        '(with its lambdas/<step>/handler.ts) or remove the placeholder',
    ),
    ...unused.map(
      (p) =>
        `${definitionPath} never uses \${${p}}: reference the function in the definition or mark the step ` +
        'invokedByStateMachine: false in lib/steps.ts',
    ),
  ];
  if (problems.length > 0) throw new Error(problems.join('\n'));
};

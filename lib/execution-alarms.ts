import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';

/** How an alarm tells what happened: the execution `failed` / `timed out` / `was aborted` → its description. */
export interface ExecutionAlarmWording {
  readonly failed: string;
  readonly description: (what: string) => string;
}

/**
 * The three alarms every Understudy state machine has, on the topic: an execution failed, timed out or
 * was aborted, at 1 or more in 5 minutes (missing data is not a breach: no runs, nothing wrong).
 */
export const executionAlarms = (
  scope: Construct,
  stateMachine: sfn.StateMachine,
  topic: sns.ITopic,
  wording: ExecutionAlarmWording,
): cloudwatch.Alarm[] => {
  const notify = new actions.SnsAction(topic);
  const alarmOn = (name: string, metric: cloudwatch.Metric, what: string): cloudwatch.Alarm => {
    const alarm = new cloudwatch.Alarm(scope, name, {
      metric,
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      alarmDescription: wording.description(what),
    });
    alarm.addAlarmAction(notify);
    return alarm;
  };
  const period = { period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM };
  return [
    alarmOn('ExecutionsFailed', stateMachine.metricFailed(period), wording.failed),
    alarmOn('ExecutionsTimedOut', stateMachine.metricTimedOut(period), 'timed out'),
    alarmOn('ExecutionsAborted', stateMachine.metricAborted(period), 'was aborted'),
  ];
};

import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import {
  METRICS_NAMESPACE,
  METRICS_SERVICE,
  OUTCOME_METRICS,
  RunMetric,
  TARGET_DIMENSION,
} from '../lambdas/shared/metrics';
import type { Outcome } from '../lambdas/shared/notify';

export interface ObservabilityProps {
  readonly stateMachine: sfn.IStateMachine;
  /** Each step's function, by step name: their errors and durations are graphed. */
  readonly functions: Readonly<Record<string, lambda.IFunction>>;
  /** The Finish function's log group, where the run records' summaries and the EMF lines are. */
  readonly finishLogGroup: logs.ILogGroup;
  /** The function that no state machine watches: its errors are alarmed on. */
  readonly signalFunction: lambda.IFunction;
  /** Alarms notify here, next to the runs' own messages. */
  readonly topic: sns.ITopic;
  /** Configured target names, one line each on the per-target graphs. */
  readonly targets: readonly string[];
  /**
   * @default - `<stack name>-understudy`
   */
  readonly dashboardName?: string;
}

const PERIOD = Duration.minutes(5);

/** A run metric Finish emits (lambdas/shared/metrics.ts), for the whole stack or one target. */
export const runMetric = (
  name: string,
  options: { statistic?: string; target?: string; label?: string } = {},
): cloudwatch.Metric =>
  new cloudwatch.Metric({
    namespace: METRICS_NAMESPACE,
    metricName: name,
    dimensionsMap: {
      service: METRICS_SERVICE,
      ...(options.target === undefined ? {} : { [TARGET_DIMENSION]: options.target }),
    },
    statistic: options.statistic ?? cloudwatch.Stats.SUM,
    period: PERIOD,
    ...(options.label === undefined ? {} : { label: options.label }),
  });

/** The Logs Insights query of docs/operations.md: every finished run, newest first. */
export const RUNS_QUERY = [
  'fields @timestamp, target, outcome, execution, ReplacementDuration, TimeToHealthy, ProbeFailedRequests, Rollbacks, ReconcileFailures',
  'filter ispresent(Runs) and ispresent(target)',
  'sort @timestamp desc',
  'limit 50',
];

/** A state machine's executions by how they ended, for a dashboard graph. */
const executionMetrics = (sm: sfn.IStateMachine): cloudwatch.IMetric[] => [
  sm.metricStarted({ period: PERIOD, label: 'started' }),
  sm.metricSucceeded({ period: PERIOD, label: 'succeeded' }),
  sm.metricFailed({ period: PERIOD, label: 'failed' }),
  sm.metricTimedOut({ period: PERIOD, label: 'timed out' }),
  sm.metricAborted({ period: PERIOD, label: 'aborted' }),
];

/**
 * The stack's dashboard and alarms. The run metrics come from Finish's EMF lines (one per target and one
 * for the stack); the rest are the metrics Step Functions and Lambda publish on their own.
 */
export class Observability extends Construct {
  readonly dashboard: cloudwatch.Dashboard;
  readonly rollbackAlarm: cloudwatch.Alarm;
  readonly reconcileAlarm: cloudwatch.Alarm;
  readonly manualActionAlarm: cloudwatch.Alarm;
  readonly signalErrorsAlarm: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const sm = props.stateMachine;
    const steps = Object.entries(props.functions);
    const perTarget = (name: string, statistic?: string) =>
      props.targets.map((target) =>
        runMetric(name, { target, label: target, ...(statistic ? { statistic } : {}) }),
      );
    const outcomes = (Object.entries(OUTCOME_METRICS) as [Outcome, string][]).map(([outcome, name]) =>
      runMetric(name, { label: outcome }),
    );

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      ...(props.dashboardName === undefined ? {} : { dashboardName: props.dashboardName }),
      defaultInterval: Duration.days(7),
    });
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Executions',
        width: 8,
        left: executionMetrics(sm),
      }),
      new cloudwatch.GraphWidget({ title: 'Run outcomes', width: 8, left: outcomes, stacked: true }),
      new cloudwatch.GraphWidget({
        title: 'Rollbacks and reconcile failures',
        width: 8,
        left: [
          runMetric(RunMetric.rollbacks, { label: 'rollbacks' }),
          runMetric(RunMetric.reconcileFailures, { label: 'reconcile failures' }),
        ],
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Replacement duration (s, max) by target',
        width: 8,
        left: perTarget(RunMetric.replacementDuration, cloudwatch.Stats.MAXIMUM),
      }),
      new cloudwatch.GraphWidget({
        title: 'Time to healthy after the switch (s, max) by target',
        width: 8,
        left: perTarget(RunMetric.timeToHealthy, cloudwatch.Stats.MAXIMUM),
      }),
      new cloudwatch.GraphWidget({
        title: 'Failed probe requests after the switch by target',
        width: 8,
        left: perTarget(RunMetric.probeFailedRequests),
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Step errors',
        width: 12,
        left: steps.map(([name, fn]) => fn.metricErrors({ period: PERIOD, label: name })),
      }),
      new cloudwatch.GraphWidget({
        title: 'Step duration (ms, p95)',
        width: 12,
        left: steps.map(([name, fn]) =>
          fn.metricDuration({ period: PERIOD, label: name, statistic: cloudwatch.Stats.percentile(95) }),
        ),
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.LogQueryWidget({
        title: 'Latest runs',
        width: 24,
        logGroupNames: [props.finishLogGroup.logGroupName],
        queryLines: RUNS_QUERY,
      }),
    );

    const notify = new actions.SnsAction(props.topic);
    const countAlarm = (id: string, metric: cloudwatch.IMetric, description: string) => {
      const alarm = new cloudwatch.Alarm(this, id, {
        metric,
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        // No run, no data: that is the quiet state, not an unknown one.
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      alarm.addAlarmAction(notify);
      return alarm;
    };
    this.rollbackAlarm = countAlarm(
      'RollbackAlarm',
      runMetric(RunMetric.rollbacks),
      'An Understudy run rolled back (or tried to): the outcome message on the topic says why.',
    );
    this.reconcileAlarm = countAlarm(
      'ReconcileFailureAlarm',
      runMetric(RunMetric.reconcileFailures),
      'An Understudy run replaced a box but left the Terraform state naming the old one: see docs/operations.md, failed reconcile.',
    );
    this.manualActionAlarm = countAlarm(
      'ManualActionAlarm',
      runMetric(OUTCOME_METRICS['manual-action-needed']),
      'An Understudy run needs a human: its outcome message has the exact commands.',
    );
    this.signalErrorsAlarm = countAlarm(
      'SignalErrorsAlarm',
      props.signalFunction.metricErrors({ period: PERIOD }),
      'The signal function failed on a readiness event: the waiting run will time out instead of going on. See its log group.',
    );
  }

  /**
   * A row for the fleet machine (lib/fleet.ts), built after this construct: its executions and the state
   * of its alarms, whose actions the fleet sets itself.
   */
  addFleetRow(fleet: {
    readonly stateMachine: sfn.IStateMachine;
    readonly alarms: readonly cloudwatch.IAlarm[];
  }): void {
    const sm = fleet.stateMachine;
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Fleet executions',
        width: 12,
        left: executionMetrics(sm),
      }),
      new cloudwatch.AlarmStatusWidget({ title: 'Fleet alarms', width: 12, alarms: [...fleet.alarms] }),
    );
  }
}

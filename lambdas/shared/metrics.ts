import type { Metrics } from '@aws-lambda-powertools/metrics';
import type { Outcome } from './notify';

/**
 * The run metrics Finish emits as CloudWatch embedded metric format (EMF) lines in its log, so no
 * PutMetricData call (and no grant) is needed. Names and dimensions are shared with the stack's
 * dashboard and alarms (lib/observability.ts): a rename here is a rename there.
 *
 * Each run is emitted twice: once per target (`service` + `target`) for the dashboard, once for the
 * whole stack (`service` only) for the alarms, which cannot sum over a dimension they do not name.
 */
export const METRICS_NAMESPACE = 'Understudy';
/** The `service` dimension; also the functions' POWERTOOLS_SERVICE_NAME. */
export const METRICS_SERVICE = 'understudy';
export const TARGET_DIMENSION = 'target';

export const RunMetric = {
  /** Every finished run, whatever its outcome. */
  runs: 'Runs',
  /** From the execution's start to Finish, for runs that replaced the box. */
  replacementDuration: 'ReplacementDuration',
  /** Probe requests that failed after the switch: the downtime the probe saw, in requests. */
  probeFailedRequests: 'ProbeFailedRequests',
  /** From the switch until the probe counted the service healthy: an upper bound of the downtime. */
  timeToHealthy: 'TimeToHealthy',
  /** 1 when the run moved traffic back (or tried to), 0 for a replacement that did not need to. */
  rollbacks: 'Rollbacks',
  /** 1 when the Terraform state could not be reconciled, 0 when it was (Terraform-managed targets). */
  reconcileFailures: 'ReconcileFailures',
} as const;

/** One count per outcome, so each can be graphed and alarmed on by name. */
export const OUTCOME_METRICS: Record<Outcome, string> = {
  replaced: 'OutcomeReplaced',
  'rolled-back': 'OutcomeRolledBack',
  'rolled-back-by-request': 'OutcomeRolledBackByRequest',
  failed: 'OutcomeFailed',
  'manual-action-needed': 'OutcomeManualActionNeeded',
  'no-op': 'OutcomeNoOp',
  'dry-run': 'OutcomeDryRun',
};

/** What Finish measured of one run; undefined fields were not measured (the run never got there). */
export interface RunMeasurement {
  readonly target: string;
  readonly outcome: Outcome;
  /** The execution's name: metadata on the per-target line, so a Logs Insights query can name the run. */
  readonly execution: string;
  readonly replacementSeconds?: number;
  readonly probeFailedRequests?: number;
  readonly timeToHealthySeconds?: number;
  readonly rolledBack?: boolean;
  readonly reconcileFailed?: boolean;
}

/** The subset of Powertools' Metrics used here, so a test can count what is emitted. */
export type MetricsSink = Pick<
  Metrics,
  'addMetric' | 'addDimension' | 'addMetadata' | 'publishStoredMetrics'
>;

const add = (sink: MetricsSink, m: RunMeasurement): void => {
  sink.addMetric(RunMetric.runs, 'Count', 1);
  sink.addMetric(OUTCOME_METRICS[m.outcome], 'Count', 1);
  if (m.replacementSeconds !== undefined) {
    sink.addMetric(RunMetric.replacementDuration, 'Seconds', m.replacementSeconds);
  }
  if (m.probeFailedRequests !== undefined) {
    sink.addMetric(RunMetric.probeFailedRequests, 'Count', m.probeFailedRequests);
  }
  if (m.timeToHealthySeconds !== undefined) {
    sink.addMetric(RunMetric.timeToHealthy, 'Seconds', m.timeToHealthySeconds);
  }
  if (m.rolledBack !== undefined) sink.addMetric(RunMetric.rollbacks, 'Count', m.rolledBack ? 1 : 0);
  if (m.reconcileFailed !== undefined) {
    sink.addMetric(RunMetric.reconcileFailures, 'Count', m.reconcileFailed ? 1 : 0);
  }
};

/**
 * Writes the run's metrics. Never throws: metrics are for the dashboard, and a run whose record and
 * outcome are written must not be retried (and counted twice) because of them.
 */
export const emitRunMetrics = (sink: MetricsSink, m: RunMeasurement): boolean => {
  try {
    sink.addDimension(TARGET_DIMENSION, m.target);
    sink.addMetadata('outcome', m.outcome);
    sink.addMetadata('execution', m.execution);
    add(sink, m);
    sink.publishStoredMetrics();
    add(sink, m);
    sink.publishStoredMetrics();
    return true;
  } catch {
    return false;
  }
};

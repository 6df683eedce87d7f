import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandOutput,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  type SFNClient,
} from '@aws-sdk/client-sfn';
import { awsFailure } from './account';
import { type CliIo, type Colors, colorsFor, LiveLine } from './terminal';

/**
 * `--watch`: a run rendered from its execution history (GetExecutionHistory), one line per state with
 * its duration, retries and, for the step that failed, the error and its cause. The fold from history
 * to lines is pure (tests feed it recorded histories); the live part polls and redraws.
 */

export type StepStatus = 'running' | 'succeeded' | 'failed' | 'caught';

export interface StepView {
  readonly name: string;
  status: StepStatus;
  readonly startedAt: number;
  endedAt?: number;
  /** Attempts of the task over all passes (TaskScheduled events). */
  attempts: number;
  /** Times the state was entered (a polling loop re-enters it). */
  passes: number;
  /** The error of each failed attempt that was retried, in order. */
  readonly retried: string[];
  error?: string;
  cause?: string;
}

export interface ExecutionView {
  readonly steps: StepView[];
  status: 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED';
  startedAt?: number;
  endedAt?: number;
  error?: string;
  cause?: string;
  /** The last step whose failure was caught or ended the run. */
  failedStep?: StepView;
}

/** States that only route (Choice, Pass) or end the run (Succeed, Fail) get no line of their own. */
const VISIBLE = /^(Task|Wait|Map|Parallel)State(Entered|Exited)$/;
const ms = (date: Date | undefined): number => date?.getTime() ?? 0;

/** The human part of a cause: Lambda's `{"errorType","errorMessage"}` envelope is unwrapped. */
export const causeText = (cause: string | undefined): string | undefined => {
  if (cause === undefined || cause === '') return undefined;
  let text = cause;
  try {
    const parsed = JSON.parse(cause) as unknown;
    if (
      parsed &&
      typeof parsed === 'object' &&
      typeof (parsed as { errorMessage?: unknown }).errorMessage === 'string'
    ) {
      text = (parsed as { errorMessage: string }).errorMessage;
    } else if (typeof parsed === 'string') {
      text = parsed;
    }
  } catch {
    // Not JSON: the cause is already text.
  }
  return text.replace(/\s+/g, ' ').trim();
};

export const foldHistory = (events: readonly HistoryEvent[]): ExecutionView => {
  const view: ExecutionView = { steps: [], status: 'RUNNING' };
  let current: StepView | undefined;
  let pending: { error?: string; cause?: string } | undefined;
  const endRun = (status: ExecutionView['status'], at: number, error?: string, cause?: string) => {
    view.status = status;
    view.endedAt = at;
    if (error !== undefined) view.error = error;
    const text = causeText(cause);
    if (text !== undefined) view.cause = text;
    if (current?.status === 'running') {
      current.status = status === 'SUCCEEDED' ? 'succeeded' : 'failed';
      current.endedAt = at;
      if (pending) {
        if (pending.error !== undefined) current.error = pending.error;
        if (pending.cause !== undefined) current.cause = pending.cause;
        view.failedStep = current;
      }
    }
  };
  for (const event of events) {
    const at = ms(event.timestamp);
    const type = event.type ?? '';
    if (type === 'ExecutionStarted') {
      view.startedAt = at;
    } else if (VISIBLE.test(type) && type.endsWith('Entered')) {
      const name = event.stateEnteredEventDetails?.name ?? '?';
      const last = view.steps[view.steps.length - 1];
      if (last && last.name === name) {
        last.passes += 1;
        last.status = 'running';
        current = last;
      } else {
        current = { name, status: 'running', startedAt: at, attempts: 0, passes: 1, retried: [] };
        view.steps.push(current);
      }
      pending = undefined;
    } else if (type === 'TaskScheduled' && current) {
      current.attempts += 1;
      if (pending) current.retried.push(pending.error ?? 'error');
      pending = undefined;
    } else if (type === 'TaskFailed' && current) {
      const details = event.taskFailedEventDetails;
      const cause = causeText(details?.cause);
      pending = {
        ...(details?.error !== undefined ? { error: details.error } : {}),
        ...(cause !== undefined ? { cause } : {}),
      };
    } else if (VISIBLE.test(type) && type.endsWith('Exited') && current) {
      current.endedAt = at;
      if (pending) {
        current.status = 'caught';
        if (pending.error !== undefined) current.error = pending.error;
        if (pending.cause !== undefined) current.cause = pending.cause;
        view.failedStep = current;
      } else {
        current.status = 'succeeded';
      }
      pending = undefined;
    } else if (type === 'ExecutionSucceeded') {
      endRun('SUCCEEDED', at);
    } else if (type === 'ExecutionFailed') {
      const d = event.executionFailedEventDetails;
      endRun('FAILED', at, d?.error, d?.cause);
    } else if (type === 'ExecutionTimedOut') {
      const d = event.executionTimedOutEventDetails;
      endRun('TIMED_OUT', at, d?.error ?? 'States.Timeout', d?.cause);
    } else if (type === 'ExecutionAborted') {
      const d = event.executionAbortedEventDetails;
      endRun('ABORTED', at, d?.error, d?.cause);
    }
  }
  return view;
};

export const seconds = (durationMs: number): string => `${(durationMs / 1000).toFixed(1)} s`;

const retrySummary = (step: StepView): string => {
  if (step.retried.length === 0) return '';
  const counts = new Map<string, number>();
  for (const error of step.retried) counts.set(error, (counts.get(error) ?? 0) + 1);
  const names = [...counts].map(([error, n]) => (n > 1 ? `${error} ×${n}` : error)).join(', ');
  return `  ${step.retried.length} ${step.retried.length === 1 ? 'retry' : 'retries'} (${names})`;
};

/** A finished step's line: mark, name, duration, passes, retries, and the error with its cause. */
export const stepLine = (step: StepView, c: Colors, width = 18): string => {
  const duration = seconds((step.endedAt ?? step.startedAt) - step.startedAt);
  const notes = `${step.passes > 1 ? `  ${step.passes} passes` : ''}${retrySummary(step)}`;
  const head = `${step.name.padEnd(width)} ${duration.padStart(8)}${notes ? c.dim(notes) : ''}`;
  if (step.status === 'succeeded') return `${c.green('✓')} ${head}`;
  const failure = [step.error, step.cause].filter(Boolean).join(': ');
  return `${c.red('✗')} ${head}${failure ? `  ${c.red(failure)}` : ''}`;
};

/** The transient line of the step in progress (TTY only); a step that just exited shows its duration. */
export const runningLine = (step: StepView, now: number, frame: string, c: Colors, width = 18): string => {
  const retries = retrySummary(step);
  const elapsed = (step.status === 'running' ? now : (step.endedAt ?? now)) - step.startedAt;
  return `${c.cyan(frame)} ${step.name.padEnd(width)} ${seconds(elapsed).padStart(8)}${retries ? c.dim(retries) : ''}`;
};

/** Every line a finished (or, so far, a running) execution renders to, without the live line. */
export const renderSteps = (view: ExecutionView, c: Colors): string[] => {
  const done = view.status === 'RUNNING' ? view.steps.slice(0, -1) : view.steps;
  return done.map((step) => stepLine(step, c));
};

/** All pages of an execution's history. */
export const executionHistory = async (sfn: SFNClient, executionArn: string): Promise<HistoryEvent[]> => {
  const events: HistoryEvent[] = [];
  let nextToken: string | undefined;
  do {
    const page = await sfn.send(
      new GetExecutionHistoryCommand({
        executionArn,
        maxResults: 1000,
        includeExecutionData: false,
        ...(nextToken ? { nextToken } : {}),
      }),
    );
    events.push(...(page.events ?? []));
    nextToken = page.nextToken;
  } while (nextToken);
  return events;
};

export interface WatchOptions {
  readonly sfn: SFNClient;
  readonly executionArn: string;
  readonly io: CliIo;
  /** Render to the terminal (false: only wait, as `--json` does). */
  readonly render: boolean;
  /** Between GetExecutionHistory calls (default 2 s; the history API allows a few calls a second). */
  readonly pollMs?: number;
  /** Between spinner redraws on a TTY (default 100 ms). */
  readonly tickMs?: number;
}

export interface WatchResult {
  readonly view: ExecutionView;
  readonly execution: DescribeExecutionCommandOutput;
}

const sleep = (msToWait: number) => new Promise((resolve) => setTimeout(resolve, msToWait));

/**
 * Follows an execution to its end. Finished steps are printed once, in order; on a TTY the step in
 * progress is a spinner line redrawn in place. A step is final once a later one started (a polling loop
 * re-enters the same state) or the run ended.
 */
export const watchExecution = async (options: WatchOptions): Promise<WatchResult> => {
  const { sfn, executionArn, io } = options;
  const c = colorsFor(io);
  const live = new LiveLine(io.stdout);
  const pollMs = options.pollMs ?? 2_000;
  const tickMs = live.interactive ? Math.min(options.tickMs ?? 100, pollMs) : pollMs;
  let printed = 0;
  let view: ExecutionView = { steps: [], status: 'RUNNING' };
  try {
    for (;;) {
      try {
        view = foldHistory(await executionHistory(sfn, executionArn));
      } catch (error) {
        throw awsFailure(`reading the history of ${executionArn}`, error);
      }
      if (options.render) {
        const lines = renderSteps(view, c);
        for (; printed < lines.length; printed += 1) live.print(lines[printed] ?? '');
      }
      if (view.status !== 'RUNNING') break;
      for (let waited = 0; waited < pollMs; waited += tickMs) {
        const step = view.steps[view.steps.length - 1];
        if (options.render && step) live.show((frame) => runningLine(step, Date.now(), frame, c));
        await sleep(tickMs);
      }
    }
  } finally {
    live.clear();
  }
  try {
    const execution = await sfn.send(new DescribeExecutionCommand({ executionArn }));
    return { view, execution };
  } catch (error) {
    throw awsFailure(`describing ${executionArn}`, error);
  }
};

import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  type HistoryEventType,
  type SFNClient,
} from '@aws-sdk/client-sfn';
import { createColors } from 'picocolors';
import { LiveLine } from '../../bin/terminal';
import { foldHistory, renderSteps, runningLine, watchExecution } from '../../bin/watch';
import { COLOUR, captureIo, REDRAW, SPINNER } from './operator-world';

const plain = createColors(false);
const T0 = Date.parse('2026-03-01T10:00:00Z');

/** A history as GetExecutionHistory returns it: ids in order, timestamps `at` seconds after T0. */
const recorded = (entries: [number, HistoryEventType, Partial<HistoryEvent>?][]): HistoryEvent[] =>
  entries.map(([at, type, details], index) => ({
    id: index + 1,
    previousEventId: index,
    timestamp: new Date(T0 + at * 1000),
    type,
    ...details,
  }));

const entered = (name: string, kind = 'Task') =>
  [`${kind}StateEntered` as HistoryEventType, { stateEnteredEventDetails: { name } }] as const;
const exited = (name: string, kind = 'Task') =>
  [`${kind}StateExited` as HistoryEventType, { stateExitedEventDetails: { name } }] as const;
const lambdaFailure = (error: string, message: string) =>
  ({
    taskFailedEventDetails: {
      resourceType: 'lambda',
      resource: 'invoke',
      error,
      cause: JSON.stringify({ errorType: error, errorMessage: message, trace: [] }),
    },
  }) as const;

/** Preflight; AwaitRunning retried twice; the Probe loop (two passes) caught; Rollback; Finish; Fail. */
const ROLLED_BACK = recorded([
  [0, 'ExecutionStarted'],
  [0, ...entered('Preflight')],
  [0, 'TaskScheduled'],
  [1, 'TaskSucceeded'],
  [1, ...exited('Preflight')],
  [1, ...entered('AwaitRunning')],
  [1, 'TaskScheduled'],
  [2, 'TaskFailed', lambdaFailure('InstanceNotReady', 'i-1 is pending')],
  [6, 'TaskScheduled'],
  [7, 'TaskFailed', lambdaFailure('InstanceNotReady', 'i-1 is pending')],
  [11, 'TaskScheduled'],
  [11, 'TaskSucceeded'],
  [11, ...exited('AwaitRunning')],
  [11, ...entered('Probe')],
  [11, 'TaskScheduled'],
  [30, 'TaskSucceeded'],
  [30, ...exited('Probe')],
  [30, ...entered('ProbeDone', 'Choice')],
  [30, ...exited('ProbeDone', 'Choice')],
  [30, ...entered('Probe')],
  [30, 'TaskScheduled'],
  [56, 'TaskFailed', lambdaFailure('BakeFailed', '3 failed probes in a row')],
  [56, ...exited('Probe')],
  [56, ...entered('Rollback')],
  [56, 'TaskScheduled'],
  [61, 'TaskSucceeded'],
  [61, ...exited('Rollback')],
  [61, ...entered('Finish')],
  [61, 'TaskScheduled'],
  [62, 'TaskSucceeded'],
  [62, ...exited('Finish')],
  [62, ...entered('Failed', 'Fail')],
  [
    62,
    'ExecutionFailed',
    { executionFailedEventDetails: { error: 'RolledBack', cause: 'web: rolled back' } },
  ],
]);

describe('the watch renderer', () => {
  it('renders a recorded rolled-back run: durations, retries with their errors, passes, the failing step and cause', () => {
    const view = foldHistory(ROLLED_BACK);

    expect(renderSteps(view, plain)).toEqual([
      '✓ Preflight             1.0 s',
      '✓ AwaitRunning         10.0 s  2 retries (InstanceNotReady ×2)',
      '✗ Probe                45.0 s  2 passes  BakeFailed: 3 failed probes in a row',
      '✓ Rollback              5.0 s',
      '✓ Finish                1.0 s',
    ]);
    expect(view.status).toBe('FAILED');
    expect(view.error).toBe('RolledBack');
    expect(view.failedStep).toMatchObject({
      name: 'Probe',
      error: 'BakeFailed',
      cause: '3 failed probes in a row',
    });
    expect((view.endedAt ?? 0) - (view.startedAt ?? 0)).toBe(62_000);
  });

  it('marks a step whose failure ended the run (no Catch) as failed, with the error and cause', () => {
    const view = foldHistory(
      recorded([
        [0, 'ExecutionStarted'],
        [0, ...entered('Finish')],
        [0, 'TaskScheduled'],
        [3, 'TaskFailed', lambdaFailure('Lambda.Unknown', 'the function crashed')],
        [
          3,
          'ExecutionFailed',
          { executionFailedEventDetails: { error: 'Lambda.Unknown', cause: 'crashed' } },
        ],
      ]),
    );

    expect(renderSteps(view, plain)).toEqual([
      '✗ Finish                3.0 s  Lambda.Unknown: the function crashed',
    ]);
    expect(view.failedStep?.name).toBe('Finish');
  });

  it('keeps the step in progress off the finished lines and shows it as the spinner line with its elapsed time', () => {
    const view = foldHistory(ROLLED_BACK.slice(0, 11));
    const step = view.steps[view.steps.length - 1];

    expect(view.status).toBe('RUNNING');
    expect(renderSteps(view, plain)).toEqual(['✓ Preflight             1.0 s']);
    expect(step && runningLine(step, T0 + 8_500, '⠋', plain)).toBe(
      '⠋ AwaitRunning          7.5 s  2 retries (InstanceNotReady ×2)',
    );
  });
});

/** A Step Functions client that plays a recorded history back, a few more events at each call. */
const playback = (events: HistoryEvent[], perCall: number): SFNClient => {
  let shown = 0;
  return {
    send: async (command: unknown) => {
      if (command instanceof GetExecutionHistoryCommand) {
        shown = Math.min(events.length, shown + perCall);
        return { events: events.slice(0, shown) };
      }
      if (command instanceof DescribeExecutionCommand) {
        return { status: 'FAILED', startDate: new Date(T0), stopDate: new Date(T0 + 62_000) };
      }
      throw new Error('not recorded');
    },
  } as unknown as SFNClient;
};

describe('watching an execution live', () => {
  it('on a terminal prints each finished step once, in order, under a redrawn spinner line', async () => {
    const capture = captureIo({ isTTY: true });

    const { view } = await watchExecution({
      sfn: playback(ROLLED_BACK, 4),
      executionArn: 'arn:aws:states:eu-west-1:1:execution:m:e',
      io: capture.io,
      render: true,
      pollMs: 4,
      tickMs: 1,
    });
    const finished = capture
      .stdout()
      .split('\n')
      .map((line) => line.replace(new RegExp(`^.*${String.fromCharCode(27)}\\[1G`), ''))
      .filter((line) => /^.*[✓✗]/.test(line));

    expect(view.status).toBe('FAILED');
    expect(finished.map((line) => line.replace(COLOUR, '').split(/\s+/)[1])).toEqual([
      'Preflight',
      'AwaitRunning',
      'Probe',
      'Rollback',
      'Finish',
    ]);
    expect(capture.stdout()).toMatch(SPINNER);
    expect(capture.stdout()).toMatch(REDRAW);
    expect(capture.stdout()).toMatch(COLOUR);
  });

  it('elsewhere prints the same lines plainly: no colour, no spinner, nothing redrawn', async () => {
    const capture = captureIo({ isTTY: false });

    await watchExecution({
      sfn: playback(ROLLED_BACK, 4),
      executionArn: 'arn:aws:states:eu-west-1:1:execution:m:e',
      io: capture.io,
      render: true,
      pollMs: 2,
    });

    expect(capture.stdout()).toBe(`${renderSteps(foldHistory(ROLLED_BACK), plain).join('\n')}\n`);
    expect(capture.stdout()).not.toMatch(SPINNER);
  });
});

describe('the spinner line', () => {
  it('stays within the terminal width, so it can be erased in place', () => {
    const written: string[] = [];
    const line = new LiveLine({ isTTY: true, columns: 20, write: (text: string) => written.push(text) });

    line.show((frame) => `${frame} AwaitReadiness   612.0 s  3 retries (InstanceNotReady ×3)`);

    expect(written[written.length - 1]).toHaveLength(19);
    expect(written[written.length - 1]).toMatch(SPINNER);
  });

  it('draws nothing off a terminal', () => {
    const written: string[] = [];
    const line = new LiveLine({ isTTY: false, write: (text: string) => written.push(text) });

    line.show((frame) => `${frame} Launch`);
    line.print('✓ Launch');

    expect(written).toEqual(['✓ Launch\n']);
  });
});

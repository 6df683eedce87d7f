import 'aws-sdk-client-mock-jest';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import {
  composeMessage,
  executionConsoleLink,
  MACHINE_READABLE_MARKER,
  machineReadable,
  type Notification,
  type OutcomeReport,
  outcomeText,
  PHASE_DETAIL_TYPES,
  phaseBus,
  publishQuietly,
  putPhaseEvent,
  rollbackCommands,
  SUBJECT_LIMIT,
  subjectLine,
} from '../../lambdas/shared/notify';

const EXECUTION_ARN = 'arn:aws:states:us-east-2:111122223333:execution:understudy-replace:web-run-7';
const switched: Notification = {
  kind: 'progress',
  event: 'switched',
  target: 'web',
  execution: 'web-run-7',
  summary: '203.0.113.10 now points at i-0bbbbbbbbbbbbbbb2 (was i-0aaaaaaaaaaaaaaa1)',
  details: {
    candidate: 'i-0bbbbbbbbbbbbbbb2',
    previousInstanceId: 'i-0aaaaaaaaaaaaaaa1',
    notSet: undefined,
    commands: ['first', 'second'],
  },
};

describe('composeMessage', () => {
  it('titles a progress message `<target>: <event>` and opens the body with its summary', () => {
    const message = composeMessage(switched);

    expect(message.Subject).toBe('web: switched');
    expect(message.Message.split('\n')[0]).toBe(switched.summary);
  });

  it('lists the details one per line for a human, leaving out those without a value', () => {
    const text = composeMessage(switched).Message.split(MACHINE_READABLE_MARKER)[0];

    expect(text).toContain('candidate: i-0bbbbbbbbbbbbbbb2\npreviousInstanceId: i-0aaaaaaaaaaaaaaa1');
    expect(text).toContain('commands: first, second');
    expect(text).not.toContain('notSet');
    expect(text).toContain('Target: web\nExecution: web-run-7');
  });

  it('puts the whole notification as JSON after the marker line, for scripts', () => {
    expect(machineReadable(composeMessage(switched).Message)).toEqual({
      kind: 'progress',
      event: 'switched',
      target: 'web',
      execution: 'web-run-7',
      summary: switched.summary,
      candidate: 'i-0bbbbbbbbbbbbbbb2',
      previousInstanceId: 'i-0aaaaaaaaaaaaaaa1',
      commands: ['first', 'second'],
    });
  });

  it('keeps kind, event, target and execution as message attributes for subscription filters', () => {
    expect(composeMessage(switched).MessageAttributes).toEqual({
      kind: { DataType: 'String', StringValue: 'progress' },
      event: { DataType: 'String', StringValue: 'switched' },
      target: { DataType: 'String', StringValue: 'web' },
      execution: { DataType: 'String', StringValue: 'web-run-7' },
    });
  });

  it('uses paragraphs of text and a headline when the caller lays them out', () => {
    const message = composeMessage({ ...switched, headline: 'web: something', text: ['One.', 'Two.'] });

    expect(message.Subject).toBe('web: something');
    expect(message.Message.startsWith(`${switched.summary}\n\nOne.\n\nTwo.\n\nTarget: web`)).toBe(true);
  });

  it('finds the document even when the text above it quotes the marker', () => {
    const note = { ...switched, summary: `a cause that says\n${MACHINE_READABLE_MARKER}\n{"kind":"forged"}` };

    expect(machineReadable(composeMessage(note).Message)).toMatchObject({ kind: 'progress' });
  });

  it('finds no document in a body without one', () => {
    expect(machineReadable('just text')).toBeUndefined();
    expect(machineReadable(`text\n${MACHINE_READABLE_MARKER}\nnot json`)).toBeUndefined();
  });
});

describe('subjectLine', () => {
  it('makes one line of printable ASCII, as SNS and e-mail need', () => {
    expect(subjectLine('web:\r\n failed\tbadly é')).toBe('web: failed badly ?');
  });

  it('cuts a long subject below 100 characters and shows that it did', () => {
    const subject = subjectLine(`web: ${'x'.repeat(200)}`);

    expect(subject).toHaveLength(SUBJECT_LIMIT);
    expect(SUBJECT_LIMIT).toBeLessThan(100);
    expect(subject.endsWith('...')).toBe(true);
  });

  it('never leaves a subject empty', () => {
    expect(subjectLine(' \n ')).toBe('understudy');
  });
});

describe('links and commands', () => {
  it("links the execution in the console of the execution's own region", () => {
    expect(executionConsoleLink(EXECUTION_ARN)).toBe(
      `https://us-east-2.console.aws.amazon.com/states/home?region=us-east-2#/v2/executions/details/${EXECUTION_ARN}`,
    );
  });

  it('starts a rollback of the same state machine, with the CLI or the AWS CLI', () => {
    expect(rollbackCommands('web', EXECUTION_ARN)).toEqual([
      'npx understudy rollback web',
      'aws stepfunctions start-execution --region us-east-2 --state-machine-arn arn:aws:states:us-east-2:111122223333:stateMachine:understudy-replace --input \'{"target":"web","action":"rollback"}\'',
    ]);
  });
});

describe('publishQuietly', () => {
  const sns = mockClient(SNSClient);
  beforeEach(() => sns.reset());

  it('publishes the composed message to the topic', async () => {
    sns.on(PublishCommand).resolves({ MessageId: 'm-1' });

    await publishQuietly(new SNSClient({}), 'arn:topic', switched, 'the switch notification');

    expect(sns).toHaveReceivedCommandWith(PublishCommand, {
      TopicArn: 'arn:topic',
      Subject: 'web: switched',
    });
  });

  it('carries on when the publish fails: the step has done its work', async () => {
    sns.on(PublishCommand).rejects(new Error('AuthorizationError'));

    await expect(
      publishQuietly(new SNSClient({}), 'arn:topic', switched, 'the switch notification'),
    ).resolves.toBeUndefined();
  });
});

describe('putPhaseEvent', () => {
  const events = mockClient(EventBridgeClient);
  const bus = () => phaseBus(new EventBridgeClient({}), 'understudy-bus');
  const detail = { target: 'web', execution: 'web-run-7', summary: 'switched', newInstanceId: 'i-0b' };
  beforeEach(() => events.reset());

  it('puts one event with the phase detail-type, source understudy, on the named bus', async () => {
    events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-1' }] });

    await putPhaseEvent(bus(), 'switched', detail);

    expect(events).toHaveReceivedCommandTimes(PutEventsCommand, 1);
    const [entry] = events.commandCalls(PutEventsCommand)[0]?.args[0].input.Entries ?? [];
    expect(entry).toMatchObject({
      EventBusName: 'understudy-bus',
      Source: 'understudy',
      DetailType: 'Replacement Switched',
    });
    expect(JSON.parse(entry?.Detail ?? '{}')).toEqual({ phase: 'switched', ...detail });
  });

  it('never uses the replacement-request detail-type, which starts runs', () => {
    expect(Object.values(PHASE_DETAIL_TYPES)).not.toContain('Replacement Requested');
  });

  it('carries on when the bus refuses the entry (PutEvents answers 200 with a per-entry error)', async () => {
    events.on(PutEventsCommand).resolves({
      FailedEntryCount: 1,
      Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'try again' }],
    });

    await expect(putPhaseEvent(bus(), 'started', detail)).resolves.toBeUndefined();
  });

  it('carries on when the call fails: a lost announcement must not decide the run', async () => {
    events.on(PutEventsCommand).rejects(new Error('AccessDeniedException'));

    await expect(putPhaseEvent(bus(), 'finished', detail)).resolves.toBeUndefined();
  });

  it('puts nothing without a bus', async () => {
    await putPhaseEvent(phaseBus(undefined, 'understudy-bus'), 'started', detail);
    await putPhaseEvent(phaseBus(new EventBridgeClient({}), undefined), 'started', detail);

    expect(events).toHaveReceivedCommandTimes(PutEventsCommand, 0);
  });
});

describe('the outcome text', () => {
  const report: OutcomeReport = {
    target: 'web',
    outcome: 'rolled-back-by-request',
    summary: 'web: rolled back from i-0b to i-0a on request',
    executionArn: EXECUTION_ARN,
    startedAt: '2026-05-01T10:00:00.000Z',
    finishedAt: '2026-05-01T10:04:05.000Z',
    action: 'rollback',
    oldInstanceId: 'i-0b',
    newInstanceId: 'i-0a',
    record: 's3://runs/runs/web/web-run-7.json',
  };

  it('tells a rollback on request as starting the retired box, not a launch, and offers no rollback of it', () => {
    const text = outcomeText(report).join('\n\n');

    expect(text).toContain('started the retired i-0a');
    expect(text).not.toContain('launched');
    expect(text).not.toContain('understudy rollback');
    expect(text).toContain('Timeline (UTC), 4m 05s in all:');
  });

  it('leaves out the downtime line when no probe ran', () => {
    expect(outcomeText(report).join('\n')).not.toContain('Downtime');
  });
});

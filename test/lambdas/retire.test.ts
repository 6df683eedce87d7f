import {
  CreateTagsCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  EC2Client,
  StopInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  CreateScheduleCommand,
  DeleteScheduleCommand,
  GetScheduleCommand,
  SchedulerClient,
} from '@aws-sdk/client-scheduler';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import { retire } from '../../lambdas/retire/retire';
import { createClients } from '../../lambdas/shared/clients';
import { awsError, lambdaContext } from '../fixtures/aws';
import { ec2Fixtures, OLD_INSTANCE_ID, reservationOf } from '../fixtures/ec2';
import { lockHeldBy } from '../fixtures/lock';
import { planFor, runState, targetConfig } from '../fixtures/target';

const ec2 = mockClient(EC2Client);
const s3 = mockClient(S3Client);
const sns = mockClient(SNSClient);
const scheduler = mockClient(SchedulerClient);
const env = {
  TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:understudy',
  SCHEDULE_GROUP: 'understudy-retirement',
  SCHEDULER_ROLE_ARN: 'arn:aws:iam::123456789012:role/understudy-retirement',
  SCHEDULE_DEAD_LETTER_ARN: 'arn:aws:sqs:eu-west-1:123456789012:understudy-failed-terminations',
};
const clients = () => ({ ...createClients(), scheduler: new SchedulerClient({ region: 'eu-west-1' }) });
const NEW_INSTANCE_ID = 'i-0c0ffee000000beef';

const oldIs = (name: string) => {
  const old = ec2Fixtures.oldInstance();
  old.State = { Name: name as never };
  ec2.on(DescribeInstancesCommand).resolves(reservationOf(old));
};

beforeEach(() => {
  ec2.reset();
  s3.reset();
  sns.reset();
  scheduler.reset();
  scheduler.on(CreateScheduleCommand).resolves({ ScheduleArn: 'arn:aws:scheduler:::schedule/x' });
  lockHeldBy(s3);
  oldIs('running');
  ec2
    .on(DescribeInstanceAttributeCommand, { Attribute: 'disableApiStop' })
    .resolves({ DisableApiStop: { Value: false } });
  ec2.on(StopInstancesCommand).resolves({ StoppingInstances: [{ InstanceId: OLD_INSTANCE_ID }] });
  ec2.on(CreateTagsCommand).resolves({});
  sns.on(PublishCommand).resolves({ MessageId: 'm-1' });
});

describe('retire', () => {
  it('stops the old box and tags it retired with its retire-after time', async () => {
    const before = Date.now();
    const state = runState({ run: planFor({ target: targetConfig({ rollback: { windowHours: 48 } }) }) });
    const result = await retire(clients(), env, state);

    expect(ec2).toHaveReceivedCommandWith(StopInstancesCommand, { InstanceIds: [OLD_INSTANCE_ID] });
    const retireAfter = Date.parse(result.retireAfter);
    expect(retireAfter - before).toBeGreaterThanOrEqual(48 * 3_600_000);
    expect(retireAfter - before).toBeLessThan(48 * 3_600_000 + 60_000);
    expect(result).toEqual({
      oldInstanceId: OLD_INSTANCE_ID,
      stopped: true,
      retireAfter: result.retireAfter,
      schedule: {
        name: `web-${OLD_INSTANCE_ID}`,
        group: env.SCHEDULE_GROUP,
        expression: `at(${result.retireAfter.slice(0, 19)})`,
      },
    });
    expect(ec2).toHaveReceivedCommandWith(CreateTagsCommand, {
      Resources: [OLD_INSTANCE_ID],
      Tags: [
        { Key: 'understudy:role', Value: 'retired' },
        { Key: 'understudy:retire-after', Value: result.retireAfter },
      ],
    });
    expect(sns).toHaveReceivedCommandTimes(PublishCommand, 0);
  });

  it('accepts an old box that is already stopped, and still tags it', async () => {
    oldIs('stopped');
    const result = await retire(clients(), env, runState());
    expect(ec2).toHaveReceivedCommandTimes(StopInstancesCommand, 0);
    expect(result.stopped).toBe(true);
    expect(ec2).toHaveReceivedCommandTimes(CreateTagsCommand, 1);
  });

  it('leaves a stop-protected box running with a note and a warning instead of failing', async () => {
    ec2
      .on(DescribeInstanceAttributeCommand, { Attribute: 'disableApiStop' })
      .resolves({ DisableApiStop: { Value: true } });
    const result = await retire(clients(), env, runState());
    expect(ec2).toHaveReceivedCommandTimes(StopInstancesCommand, 0);
    expect(result).toMatchObject({ stopped: false, note: expect.stringContaining('stop protection') });
    expect(sns).toHaveReceivedCommandWith(PublishCommand, {
      MessageAttributes: expect.objectContaining({ kind: { DataType: 'String', StringValue: 'warning' } }),
    });
    expect(ec2).toHaveReceivedCommandTimes(CreateTagsCommand, 1);
  });

  it('surfaces throttling as Transient and anything else as RetireFailed', async () => {
    ec2.on(StopInstancesCommand).rejects(awsError('RequestLimitExceeded', 'Request limit exceeded.', 503));
    await expect(retire(clients(), env, runState())).rejects.toMatchObject({ name: 'Transient' });
    ec2
      .on(StopInstancesCommand)
      .rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 403));
    await expect(retire(clients(), env, runState())).rejects.toMatchObject({
      name: 'RetireFailed',
      message: expect.stringContaining('UnauthorizedOperation'),
    });
  });

  it('relabels the new box as serving, so the candidate-only permissions no longer reach it', async () => {
    const state = { ...runState(), launch: { instanceId: NEW_INSTANCE_ID, clientToken: 'a'.repeat(64) } };

    await retire(clients(), env, state);

    expect(ec2).toHaveReceivedCommandWith(CreateTagsCommand, {
      Resources: [NEW_INSTANCE_ID],
      Tags: [{ Key: 'understudy:role', Value: 'serving' }],
    });
  });

  it('relabels the new box as serving even when the old box is already gone', async () => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [] });
    ec2
      .on(DescribeInstancesCommand, { InstanceIds: [OLD_INSTANCE_ID] })
      .rejects(awsError('InvalidInstanceID.NotFound', `The instance ID '${OLD_INSTANCE_ID}' does not exist`));
    const state = { ...runState(), launch: { instanceId: NEW_INSTANCE_ID, clientToken: 'a'.repeat(64) } };

    const result = await retire(clients(), env, state);

    expect(result).toMatchObject({ stopped: false, note: `old server ${OLD_INSTANCE_ID} no longer exists` });
    expect(ec2).toHaveReceivedCommandWith(CreateTagsCommand, {
      Resources: [NEW_INSTANCE_ID],
      Tags: [{ Key: 'understudy:role', Value: 'serving' }],
    });
  });

  it('retries (Transient) instead of failing the retire when S3 is busy during the lock renewal', async () => {
    s3.on(GetObjectCommand).rejects(awsError('SlowDown', 'Please reduce your request rate.', 503));

    await expect(retire(clients(), env, runState())).rejects.toMatchObject({ name: 'Transient' });
    expect(ec2).toHaveReceivedCommandTimes(StopInstancesCommand, 0);
  });

  it('schedules the end of the window once: a retry finds its schedule (ConflictException) and keeps the first window', async () => {
    const old = ec2Fixtures.oldInstance();
    const firstWindow = '2031-05-06T07:08:09.000Z';
    old.Tags = [
      ...(old.Tags ?? []).filter((t) => t.Key !== 'understudy:role'),
      { Key: 'understudy:role', Value: 'retired' },
      { Key: 'understudy:retire-after', Value: firstWindow },
    ];
    old.State = { Name: 'stopped' };
    ec2.on(DescribeInstancesCommand).resolves(reservationOf(old));
    scheduler
      .on(CreateScheduleCommand)
      .rejects(awsError('ConflictException', 'Schedule already exists.', 409));
    scheduler.on(GetScheduleCommand).resolves({ ScheduleExpression: 'at(2031-05-06T07:08:09)' });

    const result = await retire(clients(), env, runState());

    expect(result.retireAfter).toBe(firstWindow);
    expect(result.schedule?.expression).toBe('at(2031-05-06T07:08:09)');
    expect(scheduler).toHaveReceivedCommandWith(CreateScheduleCommand, {
      Name: `web-${OLD_INSTANCE_ID}`,
      GroupName: env.SCHEDULE_GROUP,
      ScheduleExpression: 'at(2031-05-06T07:08:09)',
      ScheduleExpressionTimezone: 'UTC',
      ActionAfterCompletion: 'DELETE',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: expect.objectContaining({
        Arn: 'arn:aws:scheduler:::aws-sdk:ec2:terminateInstances',
        RoleArn: env.SCHEDULER_ROLE_ARN,
        Input: JSON.stringify({ InstanceIds: [OLD_INSTANCE_ID] }),
      }),
    });
  });

  it('keeps an earlier retired box that has termination protection, and says so', async () => {
    const earlier = { ...ec2Fixtures.oldInstance(), InstanceId: 'i-0eeee00000000aaaa' };
    earlier.State = { Name: 'stopped' };
    ec2
      .on(DescribeInstancesCommand, {
        Filters: [
          { Name: 'tag:understudy:target', Values: ['web'] },
          { Name: 'tag:understudy:role', Values: ['retired'] },
          { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] },
        ],
      })
      .resolves(reservationOf(earlier));
    ec2
      .on(TerminateInstancesCommand)
      .rejects(awsError('OperationNotPermitted', 'The instance may not be terminated.', 400));

    const result = await retire(clients(), env, runState());

    expect(result.previous).toEqual([
      { instanceId: 'i-0eeee00000000aaaa', action: expect.stringMatching(/^kept: OperationNotPermitted/) },
    ]);
    expect(result.note).toContain('earlier retired server i-0eeee00000000aaaa was kept');
    expect(scheduler).toHaveReceivedCommandTimes(DeleteScheduleCommand, 0);
  });

  it('terminates stopped failed candidates older than retention.failedCandidateDays, and keeps younger ones', async () => {
    const failed = (id: string, daysAgo: number) => ({
      ...ec2Fixtures.oldInstance(),
      InstanceId: id,
      State: { Name: 'stopped' as const },
      LaunchTime: new Date(Date.now() - daysAgo * 86_400_000),
    });
    ec2
      .on(DescribeInstancesCommand, {
        Filters: [
          { Name: 'tag:understudy:target', Values: ['web'] },
          { Name: 'tag:understudy:role', Values: ['failed'] },
          { Name: 'instance-state-name', Values: ['stopped'] },
        ],
      })
      .resolves(reservationOf(failed('i-0aaaa00000000aaaa', 10), failed('i-0bbbb00000000bbbb', 2)));
    ec2.on(TerminateInstancesCommand).resolves({});
    const state = runState({
      run: planFor({ target: targetConfig({ retention: { failedCandidateDays: 7 } }) }),
    });

    const result = await retire(clients(), env, state);

    expect(result.expiredCandidates).toEqual([{ instanceId: 'i-0aaaa00000000aaaa', action: 'terminated' }]);
    expect(ec2).toHaveReceivedCommandTimes(TerminateInstancesCommand, 1);
    expect(ec2).toHaveReceivedCommandWith(TerminateInstancesCommand, {
      InstanceIds: ['i-0aaaa00000000aaaa'],
    });
  });

  it('leaves failed candidates alone when no retention is configured (no extra call)', async () => {
    await retire(clients(), env, runState());
    const filters = ec2
      .commandCalls(DescribeInstancesCommand)
      .map((c) => JSON.stringify(c.args[0].input.Filters ?? []));
    expect(filters.some((f) => f.includes('"failed"'))).toBe(false);
  });

  it('handler: retires from the state document', async () => {
    process.env.TOPIC_ARN = env.TOPIC_ARN;
    process.env.SCHEDULE_GROUP = env.SCHEDULE_GROUP;
    process.env.SCHEDULER_ROLE_ARN = env.SCHEDULER_ROLE_ARN;
    process.env.SCHEDULE_DEAD_LETTER_ARN = env.SCHEDULE_DEAD_LETTER_ARN;
    const { handler } = await import('../../lambdas/retire/handler');
    await expect(handler(runState(), lambdaContext('retire'))).resolves.toMatchObject({ stopped: true });
  });
});

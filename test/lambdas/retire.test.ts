import {
  CreateTagsCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  EC2Client,
  StopInstancesCommand,
} from '@aws-sdk/client-ec2';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
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
const env = { TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:understudy' };
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
    const result = await retire(createClients(), env, state);

    expect(ec2).toHaveReceivedCommandWith(StopInstancesCommand, { InstanceIds: [OLD_INSTANCE_ID] });
    const retireAfter = Date.parse(result.retireAfter);
    expect(retireAfter - before).toBeGreaterThanOrEqual(48 * 3_600_000);
    expect(retireAfter - before).toBeLessThan(48 * 3_600_000 + 60_000);
    expect(result).toEqual({
      oldInstanceId: OLD_INSTANCE_ID,
      stopped: true,
      retireAfter: result.retireAfter,
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
    const result = await retire(createClients(), env, runState());
    expect(ec2).toHaveReceivedCommandTimes(StopInstancesCommand, 0);
    expect(result.stopped).toBe(true);
    expect(ec2).toHaveReceivedCommandTimes(CreateTagsCommand, 1);
  });

  it('leaves a stop-protected box running with a note and a warning instead of failing', async () => {
    ec2
      .on(DescribeInstanceAttributeCommand, { Attribute: 'disableApiStop' })
      .resolves({ DisableApiStop: { Value: true } });
    const result = await retire(createClients(), env, runState());
    expect(ec2).toHaveReceivedCommandTimes(StopInstancesCommand, 0);
    expect(result).toMatchObject({ stopped: false, note: expect.stringContaining('stop protection') });
    expect(sns).toHaveReceivedCommandWith(PublishCommand, {
      MessageAttributes: expect.objectContaining({ kind: { DataType: 'String', StringValue: 'warning' } }),
    });
    expect(ec2).toHaveReceivedCommandTimes(CreateTagsCommand, 1);
  });

  it('surfaces throttling as Transient and anything else as RetireFailed', async () => {
    ec2.on(StopInstancesCommand).rejects(awsError('RequestLimitExceeded', 'Request limit exceeded.', 503));
    await expect(retire(createClients(), env, runState())).rejects.toMatchObject({ name: 'Transient' });
    ec2
      .on(StopInstancesCommand)
      .rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 403));
    await expect(retire(createClients(), env, runState())).rejects.toMatchObject({
      name: 'RetireFailed',
      message: expect.stringContaining('UnauthorizedOperation'),
    });
  });

  it('relabels the new box as serving, so the candidate-only permissions no longer reach it', async () => {
    const state = { ...runState(), launch: { instanceId: NEW_INSTANCE_ID, clientToken: 'a'.repeat(64) } };

    await retire(createClients(), env, state);

    expect(ec2).toHaveReceivedCommandWith(CreateTagsCommand, {
      Resources: [NEW_INSTANCE_ID],
      Tags: [{ Key: 'understudy:role', Value: 'serving' }],
    });
  });

  it('relabels the new box as serving even when the old box is already gone', async () => {
    ec2
      .on(DescribeInstancesCommand)
      .rejects(awsError('InvalidInstanceID.NotFound', `The instance ID '${OLD_INSTANCE_ID}' does not exist`));
    const state = { ...runState(), launch: { instanceId: NEW_INSTANCE_ID, clientToken: 'a'.repeat(64) } };

    const result = await retire(createClients(), env, state);

    expect(result).toMatchObject({ stopped: false, note: `old server ${OLD_INSTANCE_ID} no longer exists` });
    expect(ec2).toHaveReceivedCommandWith(CreateTagsCommand, {
      Resources: [NEW_INSTANCE_ID],
      Tags: [{ Key: 'understudy:role', Value: 'serving' }],
    });
  });

  it('retries (Transient) instead of failing the retire when S3 is busy during the lock renewal', async () => {
    s3.on(GetObjectCommand).rejects(awsError('SlowDown', 'Please reduce your request rate.', 503));

    await expect(retire(createClients(), env, runState())).rejects.toMatchObject({ name: 'Transient' });
    expect(ec2).toHaveReceivedCommandTimes(StopInstancesCommand, 0);
  });

  it('handler: retires from the state document', async () => {
    process.env.TOPIC_ARN = env.TOPIC_ARN;
    const { handler } = await import('../../lambdas/retire/handler');
    await expect(handler(runState(), lambdaContext('retire'))).resolves.toMatchObject({ stopped: true });
  });
});

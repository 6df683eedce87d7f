import {
  AssociateAddressCommand,
  DescribeAddressesCommand,
  DescribeInstancesCommand,
  EC2Client,
  type InstanceStateName,
  StopInstancesCommand,
} from '@aws-sdk/client-ec2';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateScheduleCommand, SchedulerClient } from '@aws-sdk/client-scheduler';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import { RevertRestoreEventSchema, revertRestore } from '../../lambdas/revert-restore/revert-restore';
import { CANDIDATE_ID, makeState, makeTarget, OLD_ID } from './ssm-steps.fixture';

const ec2 = mockClient(EC2Client);
const s3 = mockClient(S3Client);
const sns = mockClient(SNSClient);
const scheduler = mockClient(SchedulerClient);
// The mocks answer every client's send; the function reads its region from the EC2 client's config.
const clients = () => ({
  ec2: new EC2Client({ region: 'eu-west-1' }),
  s3: new S3Client({ region: 'eu-west-1' }),
  sns: new SNSClient({ region: 'eu-west-1' }),
  scheduler: new SchedulerClient({ region: 'eu-west-1' }),
});
const env = {
  TOPIC_ARN: 'arn:aws:sns:eu-west-1:111122223333:understudy',
  SCHEDULE_GROUP: 'understudy-retirement',
  SCHEDULER_ROLE_ARN: 'arn:aws:iam::111122223333:role/understudy-retirement',
  SCHEDULE_DEAD_LETTER_ARN: 'arn:aws:sqs:eu-west-1:111122223333:understudy-failed-terminations',
};

/** A rollback within the window that failed after RestoreSwitch: the restored box is OLD_ID. */
const failedRollback = () =>
  RevertRestoreEventSchema.parse({
    ...makeState(makeTarget(), {
      action: 'rollback',
      old: { ...makeState().run.old, instanceId: CANDIDATE_ID },
      restore: {
        instanceId: OLD_ID,
        imageId: 'ami-0aaaaaaaaaaaaaaa0',
        state: 'stopped',
        retireAfter: '2099-05-02T09:00:00.000Z',
        scheduleName: `web-${OLD_ID}`,
      },
    }),
    error: { Error: 'ProbeFailed', Cause: 'the restored box failed the probe' },
  });

const instance = (id: string, state: InstanceStateName) => ({
  Reservations: [{ Instances: [{ InstanceId: id, State: { Name: state } }] }],
});

beforeEach(() => {
  for (const mock of [ec2, s3, sns, scheduler]) mock.reset();
  s3.on(GetObjectCommand).rejects(Object.assign(new Error('no lock'), { name: 'NoSuchKey' }));
  s3.on(PutObjectCommand).resolves({});
  sns.on(PublishCommand).resolves({ MessageId: 'm-1' });
  scheduler.on(CreateScheduleCommand).resolves({ ScheduleArn: 'arn:aws:scheduler:::schedule/x' });
  ec2.on(StopInstancesCommand).resolves({});
  ec2.on(AssociateAddressCommand).resolves({ AssociationId: 'eipassoc-1' });
});

describe('revertRestore', () => {
  it('schedules no termination for a restored box left holding the Elastic IP, and says so', async () => {
    // The newer box was stopped meanwhile: the address cannot go back and stays on the restored box.
    ec2.on(DescribeAddressesCommand).resolves({
      Addresses: [{ AllocationId: 'eipalloc-0123abcd', PublicIp: '198.51.100.7', InstanceId: OLD_ID }],
    });
    ec2
      .on(DescribeInstancesCommand, { InstanceIds: [CANDIDATE_ID] })
      .resolves(instance(CANDIDATE_ID, 'stopped'));
    ec2.on(DescribeInstancesCommand, { InstanceIds: [OLD_ID] }).resolves(instance(OLD_ID, 'running'));

    const result = await revertRestore(clients(), env, failedRollback());

    expect(result.outcome).toBe('manual-action-needed');
    expect(result.candidates).toEqual([{ instanceId: OLD_ID, action: 'kept: holds the Elastic IP' }]);
    expect(scheduler.commandCalls(CreateScheduleCommand)).toEqual([]);
    expect(ec2.commandCalls(StopInstancesCommand)).toEqual([]);
    expect(result.summary).toContain('no end-of-window termination was scheduled');
  });

  it('stops the restored box and schedules its termination again when the address is not on it', async () => {
    // The address went to no instance (the newer box is stopped): the restored box must not stay up.
    ec2.on(DescribeAddressesCommand).resolves({
      Addresses: [{ AllocationId: 'eipalloc-0123abcd', PublicIp: '198.51.100.7' }],
    });
    ec2
      .on(DescribeInstancesCommand, { InstanceIds: [CANDIDATE_ID] })
      .resolves(instance(CANDIDATE_ID, 'stopped'));
    ec2.on(DescribeInstancesCommand, { InstanceIds: [OLD_ID] }).resolves(instance(OLD_ID, 'running'));

    const result = await revertRestore(clients(), env, failedRollback());

    expect(result.candidates).toEqual([{ instanceId: OLD_ID, action: 'stopped' }]);
    expect(ec2.commandCalls(StopInstancesCommand).map((c) => c.args[0].input.InstanceIds)).toEqual([
      [OLD_ID],
    ]);
    expect(scheduler.commandCalls(CreateScheduleCommand).map((c) => c.args[0].input.Name)).toEqual([
      `web-${OLD_ID}`,
    ]);
  });
});

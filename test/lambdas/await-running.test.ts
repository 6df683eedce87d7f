import { DescribeInstancesCommand, EC2Client, ModifyInstanceAttributeCommand } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { awaitRunning } from '../../lambdas/await-running/await-running';
import { createClients } from '../../lambdas/shared/clients';
import { awsError, lambdaContext } from '../fixtures/aws';
import { reservationOf } from '../fixtures/ec2';
import { runState } from '../fixtures/target';

const ec2 = mockClient(EC2Client);
const CANDIDATE = 'i-0c0ffee000000beef';
const launched = { instanceId: CANDIDATE, clientToken: 'a'.repeat(64) };
const state = (extra: Record<string, unknown> = {}) => ({ ...runState(), launch: { ...launched, ...extra } });

const candidateIs = (name: string, extra: Record<string, unknown> = {}) =>
  ec2.on(DescribeInstancesCommand).resolves(
    reservationOf({
      InstanceId: CANDIDATE,
      PrivateIpAddress: '10.0.1.77',
      State: { Name: name as never },
      ...extra,
    }),
  );

beforeEach(() => ec2.reset());

describe('await-running', () => {
  it('polls (InstanceNotReady) while the new id is not visible yet', async () => {
    ec2
      .on(DescribeInstancesCommand)
      .rejects(awsError('InvalidInstanceID.NotFound', `The instance ID '${CANDIDATE}' does not exist`));
    await expect(awaitRunning(createClients(), state())).rejects.toMatchObject({ name: 'InstanceNotReady' });
  });

  it('polls (InstanceNotReady) while the candidate is pending', async () => {
    candidateIs('pending');
    await expect(awaitRunning(createClients(), state())).rejects.toMatchObject({
      name: 'InstanceNotReady',
      message: expect.stringContaining('pending'),
    });
  });

  it('returns the launch result with the private IP once running', async () => {
    candidateIs('running');
    await expect(awaitRunning(createClients(), state())).resolves.toEqual({
      ...launched,
      privateIpAddress: '10.0.1.77',
    });
    expect(ec2).toHaveReceivedCommandTimes(ModifyInstanceAttributeCommand, 0);
  });

  it('fails with InstanceLost and the state reason when the candidate terminated', async () => {
    candidateIs('terminated', {
      StateReason: { Code: 'Client.InternalError', Message: 'Client.InternalError: Client error on launch' },
    });
    await expect(awaitRunning(createClients(), state())).rejects.toMatchObject({
      name: 'InstanceLost',
      message: expect.stringContaining(
        'terminated instead of running: Client.InternalError: Client error on launch',
      ),
    });
  });

  it('fails with InstanceLost when the candidate stopped', async () => {
    candidateIs('stopped');
    await expect(awaitRunning(createClients(), state())).rejects.toMatchObject({ name: 'InstanceLost' });
  });

  it('turns source/dest check off on a running candidate when the old box had it off, once', async () => {
    candidateIs('running', { SourceDestCheck: true });
    ec2.on(ModifyInstanceAttributeCommand).resolves({});
    await awaitRunning(createClients(), state({ sourceDestCheck: false }));
    expect(ec2).toHaveReceivedCommandWith(ModifyInstanceAttributeCommand, {
      InstanceId: CANDIDATE,
      SourceDestCheck: { Value: false },
    });

    ec2.reset();
    candidateIs('running', { SourceDestCheck: false });
    await awaitRunning(createClients(), state({ sourceDestCheck: false }));
    expect(ec2).toHaveReceivedCommandTimes(ModifyInstanceAttributeCommand, 0);
  });

  it('handler: refuses a state without a launch result, naming the field', async () => {
    const { handler } = await import('../../lambdas/await-running/handler');
    await expect(handler(runState(), lambdaContext('await-running'))).rejects.toMatchObject({
      name: 'InvalidInput',
      message: expect.stringContaining('event.launch'),
    });
    candidateIs('running');
    await expect(handler(state(), lambdaContext('await-running'))).resolves.toMatchObject({
      instanceId: CANDIDATE,
    });
  });
});

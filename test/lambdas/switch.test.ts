import {
  AssociateAddressCommand,
  DescribeAddressesCommand,
  DisassociateAddressCommand,
  EC2Client,
} from '@aws-sdk/client-ec2';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import { createClients } from '../../lambdas/shared/clients';
import { switchAddress } from '../../lambdas/switch/switch';
import { awsError, lambdaContext } from '../fixtures/aws';
import { ALLOCATION_ID, ec2Fixtures, OLD_INSTANCE_ID } from '../fixtures/ec2';
import { lockHeldBy } from '../fixtures/lock';
import { runState } from '../fixtures/target';

const ec2 = mockClient(EC2Client);
const s3 = mockClient(S3Client);
const sns = mockClient(SNSClient);
const env = { TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:understudy' };
const CANDIDATE = 'i-0c0ffee000000beef';
const state = () => ({ ...runState(), launch: { instanceId: CANDIDATE, clientToken: 'a'.repeat(64) } });
const fast = { confirmDelayMs: 0 };

/** A stateful Elastic IP: AssociateAddress moves it, DescribeAddresses reads it. */
const eip = () => {
  const address = ec2Fixtures.addresses().Addresses?.[0] ?? {};
  ec2.on(DescribeAddressesCommand).callsFake(async () => ({ Addresses: [structuredClone(address)] }));
  ec2.on(AssociateAddressCommand).callsFake(async (input: { InstanceId?: string }) => {
    address.InstanceId = input.InstanceId;
    address.AssociationId = 'eipassoc-0e0a0000000000001';
    address.NetworkInterfaceId = 'eni-0ca0d00000000001';
    address.PrivateIpAddress = '10.0.1.77';
    return { AssociationId: address.AssociationId };
  });
  return address;
};

beforeEach(() => {
  ec2.reset();
  s3.reset();
  sns.reset();
  lockHeldBy(s3);
  sns.on(PublishCommand).resolves({ MessageId: 'm-1' });
});

describe('switch', () => {
  it('moves the EIP with one AssociateAddress (AllowReassociation), no disassociate, and records the previous association', async () => {
    eip();
    const result = await switchAddress(createClients(), env, state(), fast);

    expect(ec2).toHaveReceivedCommandTimes(AssociateAddressCommand, 1);
    expect(ec2).toHaveReceivedCommandWith(AssociateAddressCommand, {
      AllocationId: ALLOCATION_ID,
      InstanceId: CANDIDATE,
      AllowReassociation: true,
    });
    expect(ec2).toHaveReceivedCommandTimes(DisassociateAddressCommand, 0);
    expect(result).toMatchObject({
      moved: true,
      associationId: 'eipassoc-0e0a0000000000001',
      previousInstanceId: OLD_INSTANCE_ID,
      previousAssociationId: 'eipassoc-0aaaa1111bbbb2222',
    });
    expect(Number.isNaN(Date.parse(result.at))).toBe(false);
    expect(sns).toHaveReceivedCommandWith(PublishCommand, {
      MessageAttributes: expect.objectContaining({ event: { DataType: 'String', StringValue: 'switched' } }),
    });
  });

  it('is a no-op on a retry after the move succeeded', async () => {
    eip();
    await switchAddress(createClients(), env, state(), fast);
    const again = await switchAddress(createClients(), env, state(), fast);

    expect(again).toMatchObject({
      moved: false,
      associationId: 'eipassoc-0e0a0000000000001',
      previousInstanceId: OLD_INSTANCE_ID,
    });
    expect(ec2).toHaveReceivedCommandTimes(AssociateAddressCommand, 1);
    expect(sns).toHaveReceivedCommandTimes(PublishCommand, 1);
  });

  it('fails with SwitchFailed when the address does not confirm on the candidate', async () => {
    ec2.on(DescribeAddressesCommand).resolves(ec2Fixtures.addresses());
    ec2.on(AssociateAddressCommand).resolves({ AssociationId: 'eipassoc-0e0a0000000000001' });
    await expect(
      switchAddress(createClients(), env, state(), { confirmAttempts: 2, confirmDelayMs: 0 }),
    ).rejects.toMatchObject({
      name: 'SwitchFailed',
      message: expect.stringContaining(`is on ${OLD_INSTANCE_ID}, not the candidate ${CANDIDATE}`),
    });
    expect(ec2).toHaveReceivedCommandTimes(DescribeAddressesCommand, 3);
    expect(sns).toHaveReceivedCommandTimes(PublishCommand, 0);
  });

  it('refuses to take an EIP that someone moved to a third instance', async () => {
    const address = eip();
    address.InstanceId = 'i-05a0e000000000001';
    await expect(switchAddress(createClients(), env, state(), fast)).rejects.toMatchObject({
      name: 'SwitchFailed',
    });
    expect(ec2).toHaveReceivedCommandTimes(AssociateAddressCommand, 0);
  });

  it('names the AWS reason when AssociateAddress is refused, and retries throttling as Transient', async () => {
    eip();
    ec2
      .on(AssociateAddressCommand)
      .rejects(
        awsError(
          'InvalidInstanceID',
          `The pending instance '${CANDIDATE}' is not in a valid state for this operation.`,
        ),
      );
    await expect(switchAddress(createClients(), env, state(), fast)).rejects.toMatchObject({
      name: 'SwitchFailed',
      message: expect.stringContaining('InvalidInstanceID'),
    });
    ec2.on(AssociateAddressCommand).rejects(awsError('RequestLimitExceeded', 'Request limit exceeded.', 503));
    await expect(switchAddress(createClients(), env, state(), fast)).rejects.toMatchObject({
      name: 'Transient',
    });
  });

  it('keeps a completed switch when the progress message cannot be published', async () => {
    eip();
    sns.on(PublishCommand).rejects(awsError('AuthorizationError', 'not allowed', 403));
    await expect(switchAddress(createClients(), env, state(), fast)).resolves.toMatchObject({ moved: true });
  });

  it('retries (Transient) instead of failing the switch when S3 is busy during the lock renewal', async () => {
    eip();
    s3.on(GetObjectCommand).rejects(awsError('SlowDown', 'Please reduce your request rate.', 503));

    await expect(switchAddress(createClients(), env, state(), fast)).rejects.toMatchObject({
      name: 'Transient',
    });
    expect(ec2).toHaveReceivedCommandTimes(AssociateAddressCommand, 0);
  });

  it('handler: switches from the state document', async () => {
    process.env.TOPIC_ARN = env.TOPIC_ARN;
    eip();
    const { handler } = await import('../../lambdas/switch/handler');
    await expect(handler(state(), lambdaContext('switch'))).resolves.toMatchObject({ moved: true });
  });
});

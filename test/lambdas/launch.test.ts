import { createHash } from 'node:crypto';
import {
  DescribeImagesCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstanceCreditSpecificationsCommand,
  DescribeInstancesCommand,
  DescribeVolumesCommand,
  EC2Client,
  type Instance,
  RunInstancesCommand,
} from '@aws-sdk/client-ec2';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { clientTokenFor, launch } from '../../lambdas/launch/launch';
import { createClients } from '../../lambdas/shared/clients';
import type { RunState } from '../../lambdas/shared/schemas';
import { awsError, lambdaContext } from '../fixtures/aws';
import { ec2Fixtures, NEW_IMAGE_ID, OLD_INSTANCE_ID, reservationOf, SUBNET_ID } from '../fixtures/ec2';
import { lockHeldBy } from '../fixtures/lock';
import { EXECUTION_ARN, EXECUTION_NAME, planFor, runState } from '../fixtures/target';

const ec2 = mockClient(EC2Client);
const s3 = mockClient(S3Client);

const NEW_INSTANCE_ID = 'i-0c0ffee000000beef';
// "#cloud-config\nruncmd:\n  - echo hi\n" as DescribeInstanceAttribute returns it: already base64.
const USER_DATA_B64 = Buffer.from('#cloud-config\nruncmd:\n  - echo hi\n').toString('base64');

const seedOld = (change: (instance: Instance) => void = () => undefined) => {
  const old = ec2Fixtures.oldInstance();
  change(old);
  ec2.on(DescribeInstancesCommand, { InstanceIds: [OLD_INSTANCE_ID] }).resolves(reservationOf(old));
};

beforeEach(() => {
  ec2.reset();
  s3.reset();
  lockHeldBy(s3);
  ec2.on(DescribeInstancesCommand).resolves(reservationOf());
  seedOld();
  ec2
    .on(DescribeInstanceAttributeCommand, { Attribute: 'userData' })
    .resolves({ UserData: { Value: USER_DATA_B64 } });
  ec2.on(DescribeInstanceAttributeCommand, { Attribute: 'disableApiTermination' }).resolves({
    DisableApiTermination: { Value: true },
  });
  ec2
    .on(DescribeInstanceAttributeCommand, { Attribute: 'disableApiStop' })
    .resolves({ DisableApiStop: { Value: false } });
  ec2.on(DescribeInstanceAttributeCommand, { Attribute: 'instanceInitiatedShutdownBehavior' }).resolves({
    InstanceInitiatedShutdownBehavior: { Value: 'terminate' },
  });
  ec2.on(DescribeInstanceCreditSpecificationsCommand).resolves({
    InstanceCreditSpecifications: [{ InstanceId: OLD_INSTANCE_ID, CpuCredits: 'standard' }],
  });
  ec2.on(DescribeVolumesCommand).resolves(ec2Fixtures.volumes());
  ec2.on(DescribeImagesCommand).resolves(ec2Fixtures.images());
  ec2.on(RunInstancesCommand).resolves({
    Instances: [
      { InstanceId: NEW_INSTANCE_ID, PrivateIpAddress: '10.0.1.77', State: { Code: 0, Name: 'pending' } },
    ],
  });
});

const request = () => {
  const call = ec2.commandCalls(RunInstancesCommand)[0];
  if (!call) throw new Error('RunInstances was not called');
  return call.args[0].input;
};

const ourTags = [
  { Key: 'understudy:target', Value: 'web' },
  { Key: 'understudy:execution', Value: EXECUTION_NAME },
  { Key: 'understudy:role', Value: 'candidate' },
];

describe('launch', () => {
  it('maps every cloned field onto RunInstances, and nothing else', async () => {
    const result = await launch(createClients(), runState());

    expect(result).toEqual({
      instanceId: NEW_INSTANCE_ID,
      clientToken: clientTokenFor(runState().execution),
      privateIpAddress: '10.0.1.77',
      launchedAt: expect.any(String),
    });
    expect(request()).toEqual({
      ImageId: NEW_IMAGE_ID,
      InstanceType: 't3.small',
      MinCount: 1,
      MaxCount: 1,
      ClientToken: clientTokenFor({ arn: EXECUTION_ARN, redriveCount: 0 }),
      SubnetId: SUBNET_ID,
      SecurityGroupIds: ['sg-0eb01111aaaa2222b', 'sg-0ad03333cccc4444d'],
      UserData: USER_DATA_B64,
      KeyName: 'ops-2024',
      IamInstanceProfile: { Arn: 'arn:aws:iam::123456789012:instance-profile/web-server' },
      DisableApiTermination: true,
      DisableApiStop: false,
      InstanceInitiatedShutdownBehavior: 'terminate',
      CreditSpecification: { CpuCredits: 'standard' },
      MetadataOptions: {
        HttpTokens: 'required',
        HttpPutResponseHopLimit: 2,
        HttpEndpoint: 'enabled',
        InstanceMetadataTags: 'enabled',
        HttpProtocolIpv6: 'disabled',
      },
      Monitoring: { Enabled: true },
      EbsOptimized: true,
      Placement: { AvailabilityZone: 'eu-west-1a', Tenancy: 'default' },
      CpuOptions: { CoreCount: 1, ThreadsPerCore: 2 },
      HibernationOptions: { Configured: false },
      MaintenanceOptions: { AutoRecovery: 'default' },
      PrivateDnsNameOptions: {
        HostnameType: 'ip-name',
        EnableResourceNameDnsARecord: true,
        EnableResourceNameDnsAAAARecord: false,
      },
      BlockDeviceMappings: [
        {
          // The NEW image's root device name, the OLD volume's settings.
          DeviceName: '/dev/sda1',
          Ebs: {
            VolumeSize: 20,
            VolumeType: 'gp3',
            Iops: 4000,
            Throughput: 250,
            DeleteOnTermination: true,
            Encrypted: true,
            KmsKeyId: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
          },
        },
      ],
      TagSpecifications: [
        {
          ResourceType: 'instance',
          Tags: [{ Key: 'Name', Value: 'web-prod' }, { Key: 'env', Value: 'prod' }, ...ourTags],
        },
        { ResourceType: 'volume', Tags: [{ Key: 'Name', Value: 'web-prod-root' }, ...ourTags] },
      ],
    });
  });

  it('passes the user data through as the base64 it was read as (no double encoding)', async () => {
    await launch(createClients(), runState());
    expect(request().UserData).toBe(USER_DATA_B64);
    expect(Buffer.from(request().UserData ?? '', 'base64').toString()).toContain('#cloud-config');
  });

  it("never copies aws: tags nor an earlier run's understudy tags", async () => {
    await launch(createClients(), runState());
    const keys = (request().TagSpecifications ?? []).flatMap((s) =>
      (s.Tags ?? []).map((t) => `${t.Key}=${t.Value}`),
    );
    expect(keys.filter((k) => k.startsWith('aws:'))).toEqual([]);
    expect(keys).not.toContain('understudy:execution=web-previous-run');
  });

  it('asks for credit specifications only for burstable types', async () => {
    seedOld((i) => {
      i.InstanceType = 'm6i.large';
    });
    await launch(createClients(), runState());
    expect(ec2).toHaveReceivedCommandTimes(DescribeInstanceCreditSpecificationsCommand, 0);
    expect(request().CreditSpecification).toBeUndefined();
  });

  it('never shrinks the root below the new image snapshot, and sends no IOPS for gp2', async () => {
    const volumes = ec2Fixtures.volumes();
    const volume = volumes.Volumes?.[0];
    if (volume) {
      volume.Size = 6;
      volume.VolumeType = 'gp2';
      volume.Iops = 100;
      delete volume.Throughput;
      volume.Encrypted = false;
      delete volume.KmsKeyId;
    }
    ec2.on(DescribeVolumesCommand).resolves(volumes);
    await launch(createClients(), runState());
    expect(request().BlockDeviceMappings).toEqual([
      { DeviceName: '/dev/sda1', Ebs: { VolumeSize: 8, VolumeType: 'gp2', DeleteOnTermination: true } },
    ]);
  });

  it('puts subnet and groups inside eth0 with a public IP when the subnet only has an internet gateway', async () => {
    await launch(createClients(), runState({ run: planFor({ needsPublicIp: true }) }));
    const sent = request();
    expect(sent.NetworkInterfaces).toEqual([
      {
        DeviceIndex: 0,
        SubnetId: SUBNET_ID,
        Groups: ['sg-0eb01111aaaa2222b', 'sg-0ad03333cccc4444d'],
        AssociatePublicIpAddress: true,
        DeleteOnTermination: true,
      },
    ]);
    expect(sent.SubnetId).toBeUndefined();
    expect(sent.SecurityGroupIds).toBeUndefined();
  });

  it('derives a ≤ 64-character client token from the execution ARN and redrive count', () => {
    const token = clientTokenFor({ arn: EXECUTION_ARN, redriveCount: 0 });
    expect(token).toHaveLength(64);
    expect(token).toBe(createHash('sha256').update(`${EXECUTION_ARN}#0`).digest('hex'));
    expect(clientTokenFor({ arn: EXECUTION_ARN, redriveCount: 1 })).not.toBe(token);
  });

  it('uses a different client token after a redrive', async () => {
    const state: RunState = runState();
    await launch(createClients(), { ...state, execution: { ...state.execution, redriveCount: 1 } });
    expect(request().ClientToken).toBe(clientTokenFor({ arn: EXECUTION_ARN, redriveCount: 1 }));
    expect(request().ClientToken).not.toBe(clientTokenFor({ arn: EXECUTION_ARN, redriveCount: 0 }));
  });

  it('reuses the instance an earlier attempt launched with the same token, without RunInstances', async () => {
    const token = clientTokenFor(runState().execution);
    ec2.on(DescribeInstancesCommand, { Filters: [{ Name: 'client-token', Values: [token] }] }).resolves(
      reservationOf({
        InstanceId: NEW_INSTANCE_ID,
        ClientToken: token,
        PrivateIpAddress: '10.0.1.77',
        State: { Code: 16, Name: 'running' },
        LaunchTime: new Date('2026-03-01T08:00:05Z'),
      }),
    );
    const result = await launch(createClients(), runState());
    // The launch time is EC2's, not this attempt's: the timeline dates the launch that happened.
    expect(result).toEqual({
      instanceId: NEW_INSTANCE_ID,
      clientToken: token,
      privateIpAddress: '10.0.1.77',
      launchedAt: '2026-03-01T08:00:05.000Z',
    });
    expect(ec2).toHaveReceivedCommandTimes(RunInstancesCommand, 0);
  });

  it('records a disabled source/dest check for await-running to apply', async () => {
    seedOld((i) => {
      i.SourceDestCheck = false;
    });
    await expect(launch(createClients(), runState())).resolves.toMatchObject({ sourceDestCheck: false });
  });

  it('retries a capacity shortage (a 5xx) as Transient, and fails a refusal with LaunchFailed naming the AWS reason', async () => {
    ec2
      .on(RunInstancesCommand)
      .rejects(
        awsError(
          'InsufficientInstanceCapacity',
          'We currently do not have sufficient t3.small capacity in eu-west-1a.',
          500,
        ),
      );
    // 500 but a capacity answer: the SDK reports it as a server fault; it is still transient for the state machine.
    await expect(launch(createClients(), runState())).rejects.toMatchObject({ name: 'Transient' });
    ec2
      .on(RunInstancesCommand)
      .rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 403));
    await expect(launch(createClients(), runState())).rejects.toMatchObject({
      name: 'LaunchFailed',
      message: expect.stringContaining('UnauthorizedOperation'),
    });
  });

  it('stops with LockLost when another execution holds the lock', async () => {
    s3.reset();
    lockHeldBy(
      s3,
      'arn:aws:states:eu-west-1:123456789012:execution:understudy-replace:web-other',
      'web-other',
    );
    await expect(launch(createClients(), runState())).rejects.toMatchObject({ name: 'LockLost' });
    expect(ec2).toHaveReceivedCommandTimes(RunInstancesCommand, 0);
  });

  it('retries (Transient) instead of failing the launch when S3 is busy during the lock renewal', async () => {
    s3.on(GetObjectCommand).rejects(awsError('SlowDown', 'Please reduce your request rate.', 503));

    await expect(launch(createClients(), runState())).rejects.toMatchObject({ name: 'Transient' });
    expect(ec2).toHaveReceivedCommandTimes(RunInstancesCommand, 0);
  });

  it('handler: launches from the state document', async () => {
    const { handler } = await import('../../lambdas/launch/handler');
    await expect(handler(runState(), lambdaContext('launch'))).resolves.toMatchObject({
      instanceId: NEW_INSTANCE_ID,
    });
  });
});

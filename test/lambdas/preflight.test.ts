import {
  CreateTagsCommand,
  DescribeAddressesCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeInstanceTypesCommand,
  DescribeRouteTablesCommand,
  DescribeVpcEndpointsCommand,
  EC2Client,
} from '@aws-sdk/client-ec2';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { preflight } from '../../lambdas/preflight/preflight';
import { createClients } from '../../lambdas/shared/clients';
import type { TargetConfig } from '../../lambdas/shared/config';
import { awsError, lambdaContext, s3Body } from '../fixtures/aws';
import {
  ALLOCATION_ID,
  ec2Fixtures,
  NEW_IMAGE_ID,
  OLD_IMAGE_ID,
  OLD_INSTANCE_ID,
  PUBLIC_IP,
  reservationOf,
} from '../fixtures/ec2';
import { lockBody, lockFree, lockHeldBy } from '../fixtures/lock';
import { type Site, startSite } from '../fixtures/site';
import { EXECUTION_ARN, EXECUTION_NAME, targetConfig } from '../fixtures/target';

const ec2 = mockClient(EC2Client);
const ssm = mockClient(SSMClient);
const s3 = mockClient(S3Client);
const sns = mockClient(SNSClient);

const env = {
  PARAMETER_PREFIX: '/understudy',
  RUNS_BUCKET: 'understudy-runs',
  TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:understudy',
};
const execution = {
  arn: EXECUTION_ARN,
  name: EXECUTION_NAME,
  redriveCount: 0,
  startTime: '2026-11-26T10:00:00.000Z',
};
const run = (input: unknown = { target: 'web' }) => preflight(createClients(), env, { input, execution });

const seed = (target: TargetConfig = targetConfig()) => {
  ssm
    .on(GetParameterCommand, { Name: '/understudy/targets/web' })
    .resolves({ Parameter: { Value: JSON.stringify(target) } });
  ssm.on(GetParameterCommand, { Name: '/golden/web/ami' }).resolves({ Parameter: { Value: NEW_IMAGE_ID } });
  ec2.on(DescribeImagesCommand).resolves(ec2Fixtures.images());
  ec2.on(DescribeAddressesCommand).resolves(ec2Fixtures.addresses());
  ec2.on(DescribeInstancesCommand).resolves(ec2Fixtures.instances());
  ec2.on(DescribeInstanceTypesCommand).resolves(ec2Fixtures.instanceTypes());
  ec2.on(DescribeRouteTablesCommand).resolves(ec2Fixtures.routeTablesNat());
  ec2.on(DescribeVpcEndpointsCommand).resolves(ec2Fixtures.vpcEndpoints());
  ec2.on(CreateTagsCommand).resolves({});
  lockFree(s3);
  sns.on(PublishCommand).resolves({ MessageId: 'msg-1' });
};

const withOldInstance = (change: (instance: ReturnType<typeof ec2Fixtures.oldInstance>) => void) => {
  const instance = ec2Fixtures.oldInstance();
  change(instance);
  ec2.on(DescribeInstancesCommand).resolves(reservationOf(instance));
};

const expectNothingMutated = () => {
  expect(ec2).toHaveReceivedCommandTimes(CreateTagsCommand, 0);
  expect(s3).toHaveReceivedCommandTimes(PutObjectCommand, 0);
  expect(sns).toHaveReceivedCommandTimes(PublishCommand, 0);
};

const refusal = (text: string) => ({ name: 'PreflightRefused', message: expect.stringContaining(text) });

let site: Site;
beforeEach(async () => {
  ec2.reset();
  ssm.reset();
  s3.reset();
  sns.reset();
  seed();
  site = await startSite(PUBLIC_IP);
});
afterEach(async () => {
  await site.close();
});

describe('preflight input', () => {
  it('refuses an unknown field, naming it, before any AWS call', async () => {
    await expect(run({ target: 'web', colour: 'blue' })).rejects.toMatchObject({
      name: 'InvalidInput',
      message: expect.stringContaining('"colour"'),
    });
    expect(ec2.calls()).toHaveLength(0);
    expect(ssm.calls()).toHaveLength(0);
  });

  it('refuses a mistyped field with its path (input.dryRun)', async () => {
    await expect(run({ target: 'web', dryRun: 'yes' })).rejects.toMatchObject({
      name: 'InvalidInput',
      field: 'input.dryRun',
      message: expect.stringMatching(/^input\.dryRun: /),
    });
    expect(ssm.calls()).toHaveLength(0);
  });

  it('refuses a target name that could escape its parameter path, before any AWS call', async () => {
    await expect(run({ target: '../other' })).rejects.toMatchObject({
      name: 'InvalidInput',
      field: 'input.target',
    });
    expect(ssm.calls()).toHaveLength(0);
  });

  it('refuses an unknown target and says where targets are configured', async () => {
    ssm
      .on(GetParameterCommand, { Name: '/understudy/targets/shop' })
      .rejects(awsError('ParameterNotFound', 'not found'));
    await expect(run({ target: 'shop' })).rejects.toMatchObject({
      name: 'InvalidInput',
      message: 'input.target: unknown target shop; configured targets are listed in understudy.config.json',
    });
    expectNothingMutated();
  });

  it('refuses the rollback action for now, with a clean reason', async () => {
    await expect(run({ target: 'web', action: 'rollback' })).rejects.toMatchObject(refusal('operator issue'));
    expect(ec2.calls()).toHaveLength(0);
  });
});

describe('preflight checks', () => {
  it('plans a replacement, takes the lock and adopts the box once every check passed', async () => {
    const plan = await run();

    expect(plan).toMatchObject({
      action: 'replace',
      image: { imageId: NEW_IMAGE_ID, architecture: 'x86_64', rootDeviceName: '/dev/sda1' },
      old: {
        instanceId: OLD_INSTANCE_ID,
        imageId: OLD_IMAGE_ID,
        instanceType: 't3.small',
        subnetId: 'subnet-0aa11bb22cc33dd44',
      },
      eip: { allocationId: ALLOCATION_ID, publicIp: PUBLIC_IP, associationId: 'eipassoc-0aaaa1111bbbb2222' },
      baseline: { healthy: true, status: 200 },
      needsPublicIp: false,
      lock: { bucket: 'understudy-runs', key: 'locks/web.json', owner: EXECUTION_ARN },
    });
    expect(site.requests).toEqual([{ host: 'www.example.com', path: '/healthz' }]);
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, {
      Bucket: 'understudy-runs',
      Key: 'locks/web.json',
      IfNoneMatch: '*',
    });
    expect(ec2).toHaveReceivedCommandWith(CreateTagsCommand, {
      Resources: [OLD_INSTANCE_ID],
      Tags: [{ Key: 'understudy:target', Value: 'web' }],
    });
    expect(sns).toHaveReceivedCommandTimes(PublishCommand, 1);
    expect(sns).toHaveReceivedCommandWith(PublishCommand, {
      MessageAttributes: expect.objectContaining({ event: { DataType: 'String', StringValue: 'started' } }),
    });
  });

  it('prefers input.imageId over the configured SSM parameter', async () => {
    await run({ target: 'web', imageId: NEW_IMAGE_ID });
    expect(ssm).toHaveReceivedCommandTimes(GetParameterCommand, 1);
    expect(ec2).toHaveReceivedCommandWith(DescribeImagesCommand, { ImageIds: [NEW_IMAGE_ID] });
  });

  it('refuses an AMI that does not exist, naming it', async () => {
    ec2
      .on(DescribeImagesCommand)
      .rejects(awsError('InvalidAMIID.NotFound', `The image id '[${NEW_IMAGE_ID}]' does not exist`));
    await expect(run()).rejects.toMatchObject(refusal(`image ${NEW_IMAGE_ID} does not exist`));
    expectNothingMutated();
  });

  it('refuses an AMI that is not available yet', async () => {
    const images = ec2Fixtures.images();
    const image = images.Images?.[0];
    if (image) image.State = 'pending';
    ec2.on(DescribeImagesCommand).resolves(images);
    await expect(run()).rejects.toMatchObject(refusal(`image ${NEW_IMAGE_ID} is pending, not available`));
    expectNothingMutated();
  });

  it('refuses an AMI whose architecture the instance type cannot run, naming both', async () => {
    const images = ec2Fixtures.images();
    const image = images.Images?.[0];
    if (image) image.Architecture = 'arm64';
    ec2.on(DescribeImagesCommand).resolves(images);
    await expect(run()).rejects.toMatchObject(
      refusal('built for arm64, but instance type t3.small supports x86_64'),
    );
    expectNothingMutated();
  });

  it('refuses when the Elastic IP is not associated with an instance', async () => {
    const addresses = ec2Fixtures.addresses();
    const address = addresses.Addresses?.[0];
    if (address) {
      delete address.InstanceId;
      delete address.AssociationId;
      delete address.NetworkInterfaceId;
    }
    ec2.on(DescribeAddressesCommand).resolves(addresses);
    await expect(run()).rejects.toMatchObject(refusal('EIP not associated'));
    expectNothingMutated();
  });

  it('refuses when the old box is not running', async () => {
    withOldInstance((i) => {
      i.State = { Code: 80, Name: 'stopped' };
    });
    await expect(run()).rejects.toMatchObject(
      refusal(`instance ${OLD_INSTANCE_ID} behind Elastic IP ${ALLOCATION_ID} is stopped`),
    );
    expectNothingMutated();
  });

  it('refuses an extra data volume and names the setting that allows it', async () => {
    withOldInstance((i) => {
      i.BlockDeviceMappings?.push({
        DeviceName: '/dev/sdf',
        Ebs: { VolumeId: 'vol-0da7a000000000001', DeleteOnTermination: false },
      });
    });
    await expect(run()).rejects.toMatchObject({
      ...refusal('/dev/sdf vol-0da7a000000000001'),
      field: 'dataVolumes',
      message: expect.stringContaining('"dataVolumes": "fresh"'),
    });
    expectNothingMutated();
  });

  it('accepts an extra data volume when the target declares dataVolumes fresh', async () => {
    seed(targetConfig({ dataVolumes: 'fresh' }));
    withOldInstance((i) => {
      i.BlockDeviceMappings?.push({
        DeviceName: '/dev/sdf',
        Ebs: { VolumeId: 'vol-0da7a000000000001', DeleteOnTermination: false },
      });
    });
    await expect(run()).resolves.toMatchObject({ action: 'replace' });
  });

  it('refuses an instance type with instance store unless dataVolumes is fresh', async () => {
    const types = ec2Fixtures.instanceTypes();
    const type = types.InstanceTypes?.[0];
    if (type) type.InstanceStorageSupported = true;
    ec2.on(DescribeInstanceTypesCommand).resolves(types);
    await expect(run()).rejects.toMatchObject(refusal('instance-store volumes'));
    expectNothingMutated();
  });

  it('refuses a box with several network interfaces', async () => {
    withOldInstance((i) => {
      const eth0 = i.NetworkInterfaces?.[0];
      if (eth0)
        i.NetworkInterfaces?.push({ ...structuredClone(eth0), NetworkInterfaceId: 'eni-05ec0dd000000001' });
    });
    await expect(run()).rejects.toMatchObject(
      refusal('2 network interfaces (eni-0123456789abcdef0, eni-05ec0dd000000001)'),
    );
    expectNothingMutated();
  });

  it('refuses a box with IPv6 addresses', async () => {
    withOldInstance((i) => {
      const eth0 = i.NetworkInterfaces?.[0];
      if (eth0) eth0.Ipv6Addresses = [{ Ipv6Address: '2a05:d018:1:2::10', IsPrimaryIpv6: false }];
    });
    await expect(run()).rejects.toMatchObject(refusal('IPv6 addresses (2a05:d018:1:2::10)'));
    expectNothingMutated();
  });

  it('refuses a box that another target already adopted', async () => {
    withOldInstance((i) => {
      i.Tags?.push({ Key: 'understudy:target', Value: 'shop' });
    });
    await expect(run()).rejects.toMatchObject(refusal('understudy:target=shop'));
    expectNothingMutated();
  });

  it('does not tag a box that already carries its target tag', async () => {
    withOldInstance((i) => {
      i.Tags?.push({ Key: 'understudy:target', Value: 'web' });
    });
    await expect(run()).resolves.toMatchObject({ action: 'replace' });
    expect(ec2).toHaveReceivedCommandTimes(CreateTagsCommand, 0);
  });

  it('records an unhealthy baseline instead of refusing (self-healing runs)', async () => {
    site.status = 503;
    const plan = await run();
    expect(plan.action).toBe('replace');
    expect(plan.baseline).toEqual({ healthy: false, status: 503, detail: 'status 503, expected 200' });
  });

  it('surfaces a throttled describe as Transient for the state machine to retry', async () => {
    ec2
      .on(DescribeInstancesCommand)
      .rejects(awsError('RequestLimitExceeded', 'Request limit exceeded.', 503));
    await expect(run()).rejects.toMatchObject({ name: 'Transient' });
    expectNothingMutated();
  });

  it('turns an unexpected SDK error into a named refusal', async () => {
    ec2.on(DescribeInstanceTypesCommand).rejects(awsError('UnauthorizedOperation', 'You are not authorized'));
    await expect(run()).rejects.toMatchObject(refusal('UnauthorizedOperation'));
    expectNothingMutated();
  });
});

describe('preflight egress (design §2.2)', () => {
  const onlyLocalRoute = () => {
    const tables = ec2Fixtures.routeTablesNat();
    const table = tables.RouteTables?.[0];
    if (table) table.Routes = table.Routes?.filter((r) => r.DestinationCidrBlock !== '0.0.0.0/0');
    ec2.on(DescribeRouteTablesCommand).resolves(tables);
  };

  it('launches with a public IP when the subnet routes out through an internet gateway', async () => {
    const tables = ec2Fixtures.routeTablesNat();
    const route = tables.RouteTables?.[0]?.Routes?.find((r) => r.DestinationCidrBlock === '0.0.0.0/0');
    if (route) {
      delete route.NatGatewayId;
      route.GatewayId = 'igw-0a1b2c3d4e5f67890';
    }
    ec2.on(DescribeRouteTablesCommand).resolves(tables);
    await expect(run()).resolves.toMatchObject({ needsPublicIp: true });
    expect(ec2).toHaveReceivedCommandTimes(DescribeVpcEndpointsCommand, 0);
  });

  it('refuses a subnet with no NAT, no internet gateway and missing endpoints, listing them', async () => {
    onlyLocalRoute();
    await expect(run()).rejects.toMatchObject(
      refusal(
        'has no route to EventBridge/SSM/S3 (no NAT, no internet gateway, missing endpoints: com.amazonaws.eu-west-1.events)',
      ),
    );
    expectNothingMutated();
  });

  it('accepts a private subnet whose VPC endpoints cover every service', async () => {
    onlyLocalRoute();
    const endpoints = ec2Fixtures.vpcEndpoints();
    endpoints.VpcEndpoints?.push({
      VpcEndpointId: 'vpce-0e0e07500000001',
      VpcEndpointType: 'Interface',
      ServiceName: 'com.amazonaws.eu-west-1.events',
      // The wire value is lowercase although the SDK enum says "Available".
      State: 'available' as never,
      PrivateDnsEnabled: true,
    });
    ec2.on(DescribeVpcEndpointsCommand).resolves(endpoints);
    await expect(run()).resolves.toMatchObject({ action: 'replace', needsPublicIp: false });
  });

  it("falls back to the VPC's main route table for a subnet without its own", async () => {
    ec2.on(DescribeRouteTablesCommand).resolves({ RouteTables: [] });
    ec2
      .on(DescribeRouteTablesCommand, {
        Filters: [
          { Name: 'vpc-id', Values: ['vpc-0123abcd4567ef890'] },
          { Name: 'association.main', Values: ['true'] },
        ],
      })
      .resolves(ec2Fixtures.routeTablesNat());
    await expect(run()).resolves.toMatchObject({ needsPublicIp: false });
    expect(ec2).toHaveReceivedCommandTimes(DescribeRouteTablesCommand, 2);
  });
});

describe('preflight outcomes without a replacement', () => {
  it('finishes as a no-op, without lock or tags, when the box already runs the image', async () => {
    ssm.on(GetParameterCommand, { Name: '/golden/web/ami' }).resolves({ Parameter: { Value: OLD_IMAGE_ID } });
    const images = ec2Fixtures.images();
    const image = images.Images?.[0];
    if (image) image.ImageId = OLD_IMAGE_ID;
    ec2.on(DescribeImagesCommand).resolves(images);

    const plan = await run();
    expect(plan.action).toBe('no-op');
    expect(plan.lock).toBeUndefined();
    expectNothingMutated();
  });

  it('dry run reports who holds the lock and mutates nothing', async () => {
    lockHeldBy(
      s3,
      'arn:aws:states:eu-west-1:123456789012:execution:understudy-replace:web-other',
      'web-other',
    );
    const plan = await run({ target: 'web', dryRun: true });
    expect(plan.action).toBe('dry-run');
    expect(plan.lock).toBeUndefined();
    expect(plan.lockHeldBy).toMatchObject({ executionName: 'web-other' });
    expectNothingMutated();
  });

  it('refuses with LockHeld naming the execution that holds the lock, and adopts nothing', async () => {
    lockHeldBy(
      s3,
      'arn:aws:states:eu-west-1:123456789012:execution:understudy-replace:web-other',
      'web-other',
    );
    await expect(run()).rejects.toMatchObject({
      name: 'LockHeld',
      message: expect.stringContaining('web-other'),
    });
    expect(ec2).toHaveReceivedCommandTimes(CreateTagsCommand, 0);
    expect(sns).toHaveReceivedCommandTimes(PublishCommand, 0);
  });

  it('gives the lock back when adopting the box fails', async () => {
    ec2
      .on(CreateTagsCommand)
      .rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 403));
    lockFree(s3);
    s3.on(GetObjectCommand).callsFake(async () => ({ Body: s3Body(lockBody()), ETag: '"etag-1"' }));
    s3.on(DeleteObjectCommand).resolves({});
    await expect(run()).rejects.toMatchObject({
      name: 'PreflightRefused',
      message: expect.stringContaining('UnauthorizedOperation'),
    });
    expect(s3).toHaveReceivedCommandWith(DeleteObjectCommand, { Key: 'locks/web.json', IfMatch: '"etag-1"' });
  });
});

describe('preflight handler', () => {
  it('wires the domain function with the environment and real client factory', async () => {
    process.env.PARAMETER_PREFIX = env.PARAMETER_PREFIX;
    process.env.RUNS_BUCKET = env.RUNS_BUCKET;
    process.env.TOPIC_ARN = env.TOPIC_ARN;
    const { handler } = await import('../../lambdas/preflight/handler');
    const plan = await handler({ input: { target: 'web' }, execution }, lambdaContext('preflight'));
    expect(plan).toMatchObject({ action: 'replace', lock: { owner: EXECUTION_ARN } });
  });
});

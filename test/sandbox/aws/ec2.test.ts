import {
  AssociateAddressCommand,
  CreateTagsCommand,
  DescribeAddressesCommand,
  DescribeInstancesCommand,
  EC2ServiceException,
  StopInstancesCommand,
} from '@aws-sdk/client-ec2';
import { httpGet } from '../../../lambdas/shared/http';
import { cloneRequest, launch, rejectionOf, useWorld } from './helpers';

const world = useWorld();

const describe1 = async (instanceId: string) => {
  const out = await world.aws.ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
  return out.Reservations?.[0]?.Instances?.[0];
};

describe('EC2 RunInstances', () => {
  it('returns the original instance for a repeated ClientToken with the same parameters and launches nothing new', async () => {
    const imageId = world.sandbox.registerImage({ cloudInit: 'done', app: 'healthy' });
    const request = await cloneRequest(world, imageId, { ClientToken: 'exec-1-0' });

    const first = await launch(world, request);
    const second = await launch(world, { ...request });

    expect(second).toBe(first);
    const launched = [...world.sandbox.ec2.instances.values()].filter((i) => i.imageId === imageId);
    expect(launched).toHaveLength(1);
  });

  it('refuses a repeated ClientToken whose parameters changed with IdempotentParameterMismatch', async () => {
    const imageId = world.sandbox.registerImage({ cloudInit: 'done', app: 'healthy' });
    const request = await cloneRequest(world, imageId, { ClientToken: 'exec-2-0' });
    await launch(world, request);

    const error = await rejectionOf(launch(world, { ...request, InstanceType: 't3.micro' }));

    expect(error.name).toBe('IdempotentParameterMismatch');
    expect(error).toBeInstanceOf(EC2ServiceException);
    expect(error.$metadata).toMatchObject({ httpStatusCode: 400 });
  });

  it('answers InvalidInstanceID.NotFound right after launch, then finds the instance and reports it running after ~10 s', async () => {
    const imageId = world.sandbox.registerImage({ cloudInit: 'done', app: 'healthy' });
    const instanceId = await launch(world, await cloneRequest(world, imageId));

    const early = await rejectionOf(describe1(instanceId));
    expect(early.name).toBe('InvalidInstanceID.NotFound');

    await world.sandbox.clock.sleep(2_500);
    expect((await describe1(instanceId))?.State?.Name).toBe('pending');

    await world.sandbox.clock.sleep(10_000);
    expect((await describe1(instanceId))?.State?.Name).toBe('running');
  });

  it("refuses tag keys starting with 'aws:' at launch and in CreateTags", async () => {
    const imageId = world.sandbox.registerImage({ cloudInit: 'done', app: 'healthy' });
    const request = await cloneRequest(world, imageId, {
      TagSpecifications: [
        { ResourceType: 'instance', Tags: [{ Key: 'aws:cloudformation:stack-name', Value: 'x' }] },
      ],
    });

    const atLaunch = await rejectionOf(launch(world, request));
    const onTag = await rejectionOf(
      world.aws.ec2.send(
        new CreateTagsCommand({
          Resources: [world.target.oldInstanceId],
          Tags: [{ Key: 'aws:autoscaling:groupName', Value: 'g' }],
        }),
      ),
    );

    expect(atLaunch.name).toBe('InvalidParameterValue');
    expect(onTag.name).toBe('InvalidParameterValue');
    expect(onTag.message).toContain("'aws:' are reserved");
  });

  it('refuses NetworkInterfaces together with an instance-level subnet', async () => {
    const imageId = world.sandbox.registerImage({ cloudInit: 'done', app: 'healthy' });
    const request = await cloneRequest(world, imageId, {
      NetworkInterfaces: [{ DeviceIndex: 0, AssociatePublicIpAddress: true }],
    });

    const error = await rejectionOf(launch(world, request));

    expect(error.name).toBe('InvalidParameterCombination');
  });

  it('refuses to stop an instance whose disableApiStop is set', async () => {
    const imageId = world.sandbox.registerImage({ cloudInit: 'done', app: 'healthy' });
    const instanceId = await launch(world, await cloneRequest(world, imageId, { DisableApiStop: true }));
    await world.sandbox.clock.sleep(11_000);

    const error = await rejectionOf(
      world.aws.ec2.send(new StopInstancesCommand({ InstanceIds: [instanceId] })),
    );

    expect(error.name).toBe('OperationNotPermitted');
  });
});

describe('EC2 Elastic IP', () => {
  it('refuses AssociateAddress while the candidate is pending, then moves the address and the traffic behind it', async () => {
    const imageId = world.sandbox.registerImage({ cloudInit: 'done', app: 'healthy', bootMs: 30_000 });
    const base = await cloneRequest(world, imageId);
    const { SubnetId, SecurityGroupIds, ...rest } = base;
    const candidate = await launch(world, {
      ...rest,
      NetworkInterfaces: [
        { DeviceIndex: 0, SubnetId, Groups: SecurityGroupIds, AssociatePublicIpAddress: true },
      ],
    });
    const move = () =>
      world.aws.ec2.send(
        new AssociateAddressCommand({
          AllocationId: world.target.allocationId,
          InstanceId: candidate,
          AllowReassociation: true,
        }),
      );

    await world.sandbox.clock.sleep(3_000);
    const pending = await rejectionOf(move());
    expect(pending.name).toBe('InvalidInstanceID');
    expect(pending.message).toBe(
      `The pending instance '${candidate}' is not in a valid state for this operation`,
    );
    const autoAssigned = (await describe1(candidate))?.NetworkInterfaces?.[0]?.Association;
    expect(autoAssigned?.IpOwnerId).toBe('amazon');

    // Running and booted: the candidate's app answers.
    await world.sandbox.clock.sleep(40_000);
    const before = await httpGet({
      address: world.target.publicIp,
      scheme: 'http',
      domain: 'web.example.test',
      path: '/',
      timeoutMs: 5_000,
    });
    expect(before.body).toContain(world.target.oldInstanceId);

    const { AssociationId } = await move();

    const addresses = await world.aws.ec2.send(
      new DescribeAddressesCommand({ AllocationIds: [world.target.allocationId] }),
    );
    expect(addresses.Addresses?.[0]).toMatchObject({
      InstanceId: candidate,
      AssociationId,
      PublicIp: world.target.publicIp,
    });
    expect(world.sandbox.eipInstance(world.target.allocationId)).toBe(candidate);
    const after = await httpGet({
      address: world.target.publicIp,
      scheme: 'http',
      domain: 'web.example.test',
      path: '/',
      timeoutMs: 5_000,
    });
    expect(after).toMatchObject({ ok: true, status: 200 });
    expect(after.body).toContain(candidate);
    // The auto-assigned address is gone for good; the instance now shows the EIP, owned by the account.
    const association = (await describe1(candidate))?.NetworkInterfaces?.[0]?.Association;
    expect(association).toMatchObject({
      PublicIp: world.target.publicIp,
      IpOwnerId: world.sandbox.accountId,
    });
  });

  it('refuses to take an associated address without AllowReassociation', async () => {
    const imageId = world.sandbox.registerImage({ cloudInit: 'done', app: 'healthy' });
    const candidate = await launch(world, await cloneRequest(world, imageId));
    await world.sandbox.clock.sleep(11_000);

    const error = await rejectionOf(
      world.aws.ec2.send(
        new AssociateAddressCommand({ AllocationId: world.target.allocationId, InstanceId: candidate }),
      ),
    );

    expect(error.name).toBe('Resource.AlreadyAssociated');
    expect(world.sandbox.eipInstance(world.target.allocationId)).toBe(world.target.oldInstanceId);
  });
});

import {
  type Address,
  AssociateAddressCommand,
  CreateTagsCommand,
  DescribeAddressesCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  EC2Client,
  type Instance,
  ModifyInstanceAttributeCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import { rollback } from '../../lambdas/rollback/rollback';
import { createClients } from '../../lambdas/shared/clients';
import type { RunState } from '../../lambdas/shared/schemas';
import { awsError, lambdaContext } from '../fixtures/aws';
import { ALLOCATION_ID, ec2Fixtures, OLD_INSTANCE_ID, PUBLIC_IP, reservationOf } from '../fixtures/ec2';
import { lockHeldBy } from '../fixtures/lock';
import { type Site, startSite } from '../fixtures/site';
import { EXECUTION_NAME, planFor, runState, targetConfig } from '../fixtures/target';

const ec2 = mockClient(EC2Client);
const s3 = mockClient(S3Client);
const sns = mockClient(SNSClient);
const env = { TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:understudy' };
const CANDIDATE = 'i-0c0ffee000000beef';
const fast = { verifyDeadlineMs: 5_000, confirmDelayMs: 0 };

/** A small stateful account: the EIP, the old box and this run's candidate. */
interface World {
  address: Address;
  old: Instance;
  candidate: Instance;
  candidateStopProtected: boolean;
  candidateTerminationProtected: boolean;
}
let world: World;

const seed = () => {
  world = {
    address: {
      ...(ec2Fixtures.addresses().Addresses?.[0] ?? {}),
      InstanceId: CANDIDATE,
      AssociationId: 'eipassoc-0e0a0000000000001',
    },
    old: ec2Fixtures.oldInstance(),
    candidate: {
      InstanceId: CANDIDATE,
      State: { Code: 16, Name: 'running' },
      Tags: [
        { Key: 'understudy:target', Value: 'web' },
        { Key: 'understudy:execution', Value: EXECUTION_NAME },
        { Key: 'understudy:role', Value: 'candidate' },
      ],
    },
    candidateStopProtected: false,
    candidateTerminationProtected: false,
  };
  ec2.on(DescribeAddressesCommand).callsFake(async () => ({ Addresses: [structuredClone(world.address)] }));
  ec2.on(AssociateAddressCommand).callsFake(async (input: { InstanceId?: string }) => {
    world.address.InstanceId = input.InstanceId;
    world.address.AssociationId = 'eipassoc-0bac0000000000001';
    return { AssociationId: world.address.AssociationId };
  });
  ec2
    .on(DescribeInstancesCommand)
    .callsFake(async (input: { InstanceIds?: string[]; Filters?: unknown[] }) => {
      if (input.InstanceIds?.includes(OLD_INSTANCE_ID)) return reservationOf(structuredClone(world.old));
      if (input.InstanceIds?.includes(CANDIDATE)) return reservationOf(structuredClone(world.candidate));
      const live = ['pending', 'running', 'stopping', 'stopped'].includes(world.candidate.State?.Name ?? '');
      return live ? reservationOf(structuredClone(world.candidate)) : reservationOf();
    });
  ec2.on(DescribeInstanceAttributeCommand, { Attribute: 'disableApiStop' }).callsFake(async () => ({
    DisableApiStop: { Value: world.candidateStopProtected },
  }));
  ec2.on(DescribeInstanceAttributeCommand, { Attribute: 'disableApiTermination' }).callsFake(async () => ({
    DisableApiTermination: { Value: world.candidateTerminationProtected },
  }));
  ec2
    .on(ModifyInstanceAttributeCommand)
    .callsFake(
      async (input: {
        DisableApiStop?: { Value?: boolean };
        DisableApiTermination?: { Value?: boolean };
      }) => {
        if (input.DisableApiStop) world.candidateStopProtected = input.DisableApiStop.Value === true;
        if (input.DisableApiTermination)
          world.candidateTerminationProtected = input.DisableApiTermination.Value === true;
        return {};
      },
    );
  ec2.on(StopInstancesCommand).callsFake(async () => {
    if (world.candidateStopProtected)
      throw awsError('OperationNotPermitted', 'The instance has stop protection enabled');
    world.candidate.State = { Code: 64, Name: 'stopping' };
    return { StoppingInstances: [{ InstanceId: CANDIDATE }] };
  });
  ec2.on(TerminateInstancesCommand).callsFake(async () => {
    if (world.candidateTerminationProtected)
      throw awsError('OperationNotPermitted', 'The instance may not be terminated.');
    world.candidate.State = { Code: 32, Name: 'shutting-down' };
    return { TerminatingInstances: [{ InstanceId: CANDIDATE }] };
  });
  ec2.on(CreateTagsCommand).callsFake(async (input: { Tags?: { Key?: string; Value?: string }[] }) => {
    world.candidate.Tags = [
      ...(world.candidate.Tags ?? []).filter((t) => !input.Tags?.some((n) => n.Key === t.Key)),
      ...(input.Tags ?? []),
    ];
    return {};
  });
};

const failedState = (overrides: Partial<RunState> = {}): RunState =>
  runState({
    launch: { instanceId: CANDIDATE, clientToken: 'a'.repeat(64) },
    error: { Error: 'BakeFailed', Cause: '3 consecutive failures during the bake period' },
    ...overrides,
  });

let site: Site;
beforeEach(async () => {
  ec2.reset();
  s3.reset();
  sns.reset();
  lockHeldBy(s3);
  sns.on(PublishCommand).resolves({ MessageId: 'm-1' });
  seed();
  site = await startSite(PUBLIC_IP);
});
afterEach(async () => {
  await site.close();
});

describe('rollback', () => {
  it('moves the EIP back, verifies it, stops the candidate and tags it failed', async () => {
    const result = await rollback(createClients(), env, failedState(), fast);

    expect(ec2).toHaveReceivedCommandWith(AssociateAddressCommand, {
      AllocationId: ALLOCATION_ID,
      InstanceId: OLD_INSTANCE_ID,
      AllowReassociation: true,
    });
    expect(result).toMatchObject({
      outcome: 'rolled-back',
      eipInstanceId: OLD_INSTANCE_ID,
      serviceHealthy: true,
      candidates: [{ instanceId: CANDIDATE, action: 'stopped' }],
      commands: [],
    });
    expect(site.requests.length).toBeGreaterThanOrEqual(2);
    expect(ec2).toHaveReceivedCommandWith(StopInstancesCommand, { InstanceIds: [CANDIDATE] });
    expect(world.candidate.Tags).toContainEqual({ Key: 'understudy:role', Value: 'failed' });
    expect(sns).toHaveReceivedCommandWith(PublishCommand, {
      MessageAttributes: expect.objectContaining({ kind: { DataType: 'String', StringValue: 'warning' } }),
      Message: expect.stringContaining('BakeFailed'),
    });
  });

  it('does not call AssociateAddress when the EIP never moved', async () => {
    world.address.InstanceId = OLD_INSTANCE_ID;
    const result = await rollback(createClients(), env, failedState(), fast);
    expect(ec2).toHaveReceivedCommandTimes(AssociateAddressCommand, 0);
    expect(result).toMatchObject({
      outcome: 'rolled-back',
      eipInstanceId: OLD_INSTANCE_ID,
      serviceHealthy: true,
    });
    expect(world.candidate.State?.Name).toBe('stopping');
  });

  it('terminates the candidate when the target says so, lifting the termination protection it copied', async () => {
    world.candidateTerminationProtected = true;
    const state = failedState({
      run: planFor({ target: targetConfig({ rollback: { failedCandidate: 'terminate' } }) }),
    });
    const result = await rollback(createClients(), env, state, fast);
    expect(ec2).toHaveReceivedCommandWith(ModifyInstanceAttributeCommand, {
      InstanceId: CANDIDATE,
      DisableApiTermination: { Value: false },
    });
    expect(ec2).toHaveReceivedCommandWith(TerminateInstancesCommand, { InstanceIds: [CANDIDATE] });
    expect(result.candidates).toEqual([{ instanceId: CANDIDATE, action: 'terminated' }]);
    expect(world.candidate.Tags).toContainEqual({ Key: 'understudy:role', Value: 'failed' });
  });

  it('lifts a copied stop protection before stopping the candidate', async () => {
    world.candidateStopProtected = true;
    const result = await rollback(createClients(), env, failedState(), fast);
    expect(result.candidates).toEqual([{ instanceId: CANDIDATE, action: 'stopped' }]);
    expect(world.candidate.State?.Name).toBe('stopping');
  });

  it('leaves an already stopped candidate alone but still tags it failed', async () => {
    world.candidate.State = { Code: 80, Name: 'stopped' };
    const result = await rollback(createClients(), env, failedState(), fast);
    expect(ec2).toHaveReceivedCommandTimes(StopInstancesCommand, 0);
    expect(result.candidates).toEqual([{ instanceId: CANDIDATE, action: 'already-stopped' }]);
    expect(world.candidate.Tags).toContainEqual({ Key: 'understudy:role', Value: 'failed' });
  });

  it('says the service was already unhealthy before the run instead of claiming health', async () => {
    site.status = 503;
    const state = failedState({
      run: planFor({ baseline: { healthy: false, status: 503, detail: 'status 503, expected 200' } }),
    });
    const result = await rollback(createClients(), env, state, { ...fast, verifyDeadlineMs: 1_500 });
    expect(result.outcome).toBe('rolled-back');
    expect(result.serviceHealthy).toBe(false);
    expect(result.summary).toContain('service was already unhealthy before the run');
  });

  it('needs a human when a service that was healthy does not come back', async () => {
    site.status = 502;
    const result = await rollback(createClients(), env, failedState(), { ...fast, verifyDeadlineMs: 1_500 });
    expect(result).toMatchObject({
      outcome: 'manual-action-needed',
      eipInstanceId: OLD_INSTANCE_ID,
      serviceHealthy: false,
    });
    expect(result.summary).toContain('does not answer healthy: status 502');
    expect(result.commands).toEqual([
      `curl -sS -o /dev/null -w '%{http_code}\\n' --resolve 'www.example.com:80:${PUBLIC_IP}' 'http://www.example.com/healthz'`,
    ]);
  });

  it('gives a check command that sends the domain as SNI over HTTPS, not a bare IP with a Host header', async () => {
    const state = failedState({
      run: planFor({ target: targetConfig({ tls: { mode: 'http-01', email: 'ops@example.com' } }) }),
    });

    const result = await rollback(createClients(), env, state, { ...fast, verifyDeadlineMs: 1_500 });

    expect(result.outcome).toBe('manual-action-needed');
    expect(result.commands).toContain(
      `curl -sS -o /dev/null -w '%{http_code}\\n' --resolve 'www.example.com:443:${PUBLIC_IP}' 'https://www.example.com/healthz'`,
    );
    expect(result.commands.join('\n')).not.toContain('Host:');
  });

  it('returns manual-action-needed with the exact commands when the EIP cannot be moved back', async () => {
    ec2
      .on(AssociateAddressCommand)
      .rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 403));
    const result = await rollback(createClients(), env, failedState(), fast);

    expect(result.outcome).toBe('manual-action-needed');
    expect(result.eipInstanceId).toBe(CANDIDATE);
    expect(result.commands).toEqual([
      `aws ec2 associate-address --region eu-west-1 --allocation-id ${ALLOCATION_ID} --instance-id ${OLD_INSTANCE_ID} --allow-reassociation`,
      `aws ec2 describe-addresses --region eu-west-1 --allocation-ids ${ALLOCATION_ID} --query 'Addresses[0].InstanceId' --output text`,
      `aws ec2 stop-instances --region eu-west-1 --instance-ids ${CANDIDATE}`,
    ]);
    // The candidate still serves the EIP: stopping it now would take the site down.
    expect(ec2).toHaveReceivedCommandTimes(StopInstancesCommand, 0);
    expect(result.candidates).toEqual([{ instanceId: CANDIDATE, action: 'kept: holds the Elastic IP' }]);
    expect(result.summary).toContain('UnauthorizedOperation');
  });

  it('needs a human (start the old box first) when the old box is stopped', async () => {
    world.old.State = { Code: 80, Name: 'stopped' };
    const result = await rollback(createClients(), env, failedState(), fast);
    expect(ec2).toHaveReceivedCommandTimes(AssociateAddressCommand, 0);
    expect(result.outcome).toBe('manual-action-needed');
    expect(result.commands[0]).toBe(
      `aws ec2 start-instances --region eu-west-1 --instance-ids ${OLD_INSTANCE_ID}`,
    );
    expect(result.commands).toContain(
      `aws ec2 associate-address --region eu-west-1 --allocation-id ${ALLOCATION_ID} --instance-id ${OLD_INSTANCE_ID} --allow-reassociation`,
    );
  });

  it('retries (Transient) when the recorded candidate is not visible yet', async () => {
    world.candidate.State = { Code: 48, Name: 'terminated' };
    ec2
      .on(DescribeInstancesCommand, { InstanceIds: [CANDIDATE] })
      .rejects(awsError('InvalidInstanceID.NotFound', `The instance ID '${CANDIDATE}' does not exist`));
    await expect(rollback(createClients(), env, failedState(), fast)).rejects.toMatchObject({
      name: 'Transient',
    });
  });

  it('wraps an unexpected failure as RollbackFailed carrying the manual commands', async () => {
    ec2
      .on(DescribeAddressesCommand)
      .rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 403));
    await expect(rollback(createClients(), env, failedState(), fast)).rejects.toMatchObject({
      name: 'RollbackFailed',
      message: expect.stringContaining(
        `aws ec2 associate-address --region eu-west-1 --allocation-id ${ALLOCATION_ID}`,
      ),
    });
  });

  it('is idempotent: a second run finds everything in place and changes nothing', async () => {
    await rollback(createClients(), env, failedState(), fast);
    ec2.resetHistory();
    const again = await rollback(createClients(), env, failedState(), fast);
    expect(ec2).toHaveReceivedCommandTimes(AssociateAddressCommand, 0);
    expect(ec2).toHaveReceivedCommandTimes(StopInstancesCommand, 0);
    expect(ec2).toHaveReceivedCommandTimes(CreateTagsCommand, 0);
    expect(again).toMatchObject({
      outcome: 'rolled-back',
      candidates: [{ instanceId: CANDIDATE, action: 'already-stopped' }],
    });
  });

  it('handler: rolls back from the state document', async () => {
    process.env.TOPIC_ARN = env.TOPIC_ARN;
    world.address.InstanceId = OLD_INSTANCE_ID;
    const { handler } = await import('../../lambdas/rollback/handler');
    await expect(handler(failedState(), lambdaContext('rollback'))).resolves.toMatchObject({
      outcome: 'rolled-back',
    });
  });
});

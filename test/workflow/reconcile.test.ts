import { createHash } from 'node:crypto';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { clients, dynamodbClient } from '../../lambdas/shared/clients';
import { parseResourceAddress } from '../../lambdas/shared/tfstate/address';
import { findInstance } from '../../lambdas/shared/tfstate/lookup';
import { readState, serialText } from '../../lambdas/shared/tfstate/state';
import { DEMO_TERRAFORM } from '../../sandbox/terraform';
import type { HandlerSet } from '../../sandbox/workflow';
import { startWorld, type World } from './helpers';

const { bucket, key, table, instanceAddress } = DEMO_TERRAFORM;

const getText = async (objectKey: string): Promise<string | undefined> => {
  try {
    const out = await clients().s3.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey }));
    return await out.Body?.transformToString();
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') return undefined;
    throw error;
  }
};
const stateText = async () => (await getText(key)) as string;
const item = async (lockId: string) =>
  (
    await dynamodbClient().send(
      new GetItemCommand({ TableName: table, Key: { LockID: { S: lockId } }, ConsistentRead: true }),
    )
  ).Item;
const md5 = (text: string) => createHash('md5').update(text).digest('hex');
const serverAt = (text: string) => {
  const found = findInstance(readState(text), parseResourceAddress(instanceAddress));
  return found?.instance;
};

describe('the Terraform state of a replaced server', () => {
  let world: World | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it('names the new instance after a replacement, one serial later, with a verified backup, a matching digest and no lock left', async () => {
    world = await startWorld();
    const before = await stateText();
    const run = await world.run();

    expect(run.outcome).toBe('replaced');
    const candidate = world.sandbox.eipInstance(world.seeded.allocationId);
    expect(candidate).not.toBe(world.seeded.oldInstanceId);
    const after = await stateText();
    const server = serverAt(after);
    expect(server?.attributes?.id).toBe(candidate);
    expect(server?.identity?.id).toBe(candidate);
    expect(serialText(readState(after).serial)).toBe(
      String(Number(serialText(readState(before).serial)) + 1),
    );
    expect(readState(after).lineage).toBe(readState(before).lineage);

    const summary = (run.outputs.Reconcile as { reconcile: { status: string; backupKey: string } }).reconcile;
    expect(summary.status).toBe('reconciled');
    expect(await getText(summary.backupKey)).toBe(before);
    expect((await item(`${bucket}/${key}-md5`))?.Digest?.S).toBe(md5(after));
    expect(await getText(`${key}.tflock`)).toBeUndefined();
    expect(await item(`${bucket}/${key}`)).toBeUndefined();
  });

  it('reports the alarm that still names the old instance, for the next apply to update', async () => {
    world = await startWorld();
    const run = await world.run();

    const summary = (run.outputs.Reconcile as { reconcile: { stillMentioning: string[] } }).reconcile;
    expect(summary.stillMentioning).toContain('aws_cloudwatch_metric_alarm.web_status');
  });

  it('writes once when the reconcile function dies after writing and Step Functions runs it again', async () => {
    let crashed = false;
    world = await startWorld({
      wrap: (handlers: HandlerSet) => ({
        ...handlers,
        reconcile: async (event, context) => {
          const result = await (handlers.reconcile as NonNullable<HandlerSet['reconcile']>)(event, context);
          if (!crashed) {
            crashed = true;
            const error = new Error('the function died after writing the state');
            error.name = 'Lambda.ServiceException';
            throw error;
          }
          return result;
        },
      }),
    });
    const before = await stateText();
    const run = await world.run();

    expect(crashed).toBe(true);
    expect(run.outcome).toBe('replaced');
    const summary = (run.outputs.Reconcile as { reconcile: { status: string } }).reconcile;
    expect(summary.status).toBe('already-reconciled');
    const after = await stateText();
    expect(Number(serialText(readState(after).serial))).toBe(
      Number(serialText(readState(before).serial)) + 1,
    );
    expect((await item(`${bucket}/${key}-md5`))?.Digest?.S).toBe(md5(after));
    expect(await getText(`${key}.tflock`)).toBeUndefined();
  });

  it('leaves a healthy replacement in place when a Terraform user holds the state lock, and says how to finish by hand', async () => {
    world = await startWorld({
      target: (t) => (t.terraform ? { ...t, terraform: { ...t.terraform, lockTimeoutSeconds: 5 } } : t),
    });
    const userLock = JSON.stringify({
      ID: '9a1e7c55-3f0b-4d4e-8f6a-2b1c0d9e8f7a',
      Operation: 'OperationTypeApply',
      Info: '',
      Who: 'alice@laptop',
      Version: '1.13.4',
      Created: '2026-11-26T09:00:00.123456789Z',
      Path: `${bucket}/${key}`,
    });
    await clients().s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `${key}.tflock`,
        Body: userLock,
        ContentType: 'application/json',
      }),
    );
    const before = await stateText();
    const run = await world.run();

    expect(run.outcome).toBe('replaced');
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).not.toBe(world.seeded.oldInstanceId);
    expect(await stateText()).toBe(before);
    expect(await getText(`${key}.tflock`)).toBe(userLock);
    const warning = world.sandbox.messages.find((m) => m.attributes.event === 'state-not-reconciled');
    expect(warning?.attributes.kind).toBe('warning');
    expect(warning?.message).toContain('alice@laptop');
    expect(warning?.message).toContain('npx understudy tfstate reconcile');
    expect(warning?.message).toContain(`--expect-instance '${world.seeded.oldInstanceId}'`);
    const outcome = world.sandbox.messages.filter((m) => m.attributes.kind === 'outcome');
    expect(outcome).toHaveLength(1);
    expect(outcome[0]?.message).toContain('Terraform state not reconciled');
  });

  it('refuses, before anything is launched, a replacement whose instance address is not in the state', async () => {
    world = await startWorld({
      target: (t) =>
        t.terraform
          ? { ...t, terraform: { ...t.terraform, instanceAddress: 'module.web.aws_instance.blue' } }
          : t,
    });
    const before = await stateText();
    const run = await world.run();

    expect(run.outcome).toBe('failed');
    expect(run.cause).toContain(
      'terraform.instanceAddress: module.web.aws_instance.blue is not in the state',
    );
    expect(world.mutatingCalls((c) => c.service === 'ec2')).toEqual([]);
    expect(world.sandbox.eipInstance(world.seeded.allocationId)).toBe(world.seeded.oldInstanceId);
    expect(await stateText()).toBe(before);
  });

  it('refuses a replacement while the state still names an earlier server, until it is reconciled', async () => {
    world = await startWorld();
    const stale = (await stateText()).replaceAll(world.seeded.oldInstanceId, 'i-0123456789abcdef0');
    await clients().s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: stale }));
    await dynamodbClient().send(
      new PutItemCommand({
        TableName: table,
        Item: { LockID: { S: `${bucket}/${key}-md5` }, Digest: { S: md5(stale) } },
      }),
    );
    const run = await world.run();

    expect(run.outcome).toBe('failed');
    expect(run.cause).toContain(`is i-0123456789abcdef0, not ${world.seeded.oldInstanceId}`);
    expect(world.mutatingCalls((c) => c.service === 'ec2')).toEqual([]);
  });

  it('is skipped, touching no state bucket, for a server Terraform does not manage', async () => {
    world = await startWorld({ terraform: false });
    const run = await world.run();

    expect(run.outcome).toBe('replaced');
    expect((run.outputs.Reconcile as { reconcile: { status: string } }).reconcile.status).toBe(
      'not-configured',
    );
    expect(world.sandbox.calls.some((c) => c.service === 'dynamodb')).toBe(false);
  });

  it('is not touched by a run that rolls back', async () => {
    world = await startWorld({ newImage: { cloudInit: 'error', app: 'broken' } });
    const before = await stateText();
    const run = await world.run();

    expect(run.outcome).toBe('rolled-back');
    expect(run.timeline.some((e) => e.state === 'Reconcile')).toBe(false);
    expect(await stateText()).toBe(before);
  });
});

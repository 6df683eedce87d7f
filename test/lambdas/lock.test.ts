import 'aws-sdk-client-mock-jest';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createClients } from '../../lambdas/shared/clients';
import { acquireLock, readLock, releaseLock, renewHeldLock, renewLock } from '../../lambdas/shared/lock';
import { awsError } from '../fixtures/aws';
import { BUCKET, EXECUTION_ARN, EXECUTION_NAME, fakeS3, lockFor } from './ssm-steps.fixture';

let s3: ReturnType<typeof fakeS3>;
const client = () => createClients().s3;
const slowDown = () => awsError('SlowDown', 'Please reduce your request rate.', 503);
const request = {
  bucket: BUCKET,
  key: lockFor().key,
  owner: EXECUTION_ARN,
  executionName: EXECUTION_NAME,
  target: 'web',
  leaseSeconds: 3_600,
};

beforeEach(() => {
  s3 = fakeS3();
});

describe('the target lock', () => {
  it('refuses a lock object that is not JSON as LockHeld, asking for a human, and leaves it in place', async () => {
    s3.seedLock(EXECUTION_ARN, EXECUTION_NAME, '{"owner": "arn:aws:states:…", truncated');
    const unreadable = {
      name: 'LockHeld',
      message: `lock s3://${BUCKET}/${request.key} is unreadable; inspect and delete it by hand`,
    };

    await expect(readLock(client(), BUCKET, request.key)).rejects.toMatchObject(unreadable);
    await expect(acquireLock(client(), request)).rejects.toMatchObject(unreadable);
    await expect(releaseLock(client(), lockFor())).rejects.toMatchObject(unreadable);
    expect(s3.mock).toHaveReceivedCommandTimes(DeleteObjectCommand, 0);
  });

  it.each([
    ['reads (renewal)', GetObjectCommand, () => renewLock(client(), lockFor())],
    ['writes (renewal)', PutObjectCommand, () => renewLock(client(), lockFor())],
    ['deletes (release)', DeleteObjectCommand, () => releaseLock(client(), lockFor())],
  ] as const)('surfaces a throttled S3 as Transient when it %s the lock', async (_label, command, act) => {
    s3.seedLock();
    s3.mock.on(command).rejects(slowDown());

    await expect(act()).rejects.toMatchObject({ name: 'Transient' });
  });

  it('renews nothing, and reads nothing, for a run that holds no lock', async () => {
    await renewHeldLock(client(), undefined);

    expect(s3.mock).toHaveReceivedCommandTimes(GetObjectCommand, 0);
  });

  it("extends this run's lease when it holds the lock", async () => {
    s3.seedLock();
    const before = s3.objects.get(request.key)?.etag;

    await renewHeldLock(client(), lockFor());

    expect(s3.objects.get(request.key)?.etag).not.toBe(before);
  });
});

import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DescribeInstancesCommand, type EC2Client } from '@aws-sdk/client-ec2';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import {
  InvalidToken,
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  type SFNClient,
  TaskTimedOut,
} from '@aws-sdk/client-sfn';
import {
  DeleteParametersCommand,
  DescribeInstanceInformationCommand,
  GetParameterCommand,
  ListCommandsCommand,
  ParameterAlreadyExists,
  ParameterNotFound,
  PutParameterCommand,
  SendCommandCommand,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import { type AwsClientStub, mockClient } from 'aws-sdk-client-mock';
import type { TargetConfig } from '../../lambdas/shared/config';
import { LOCK_LEASE_SECONDS, runKeys, Tags } from '../../lambdas/shared/constants';
import type { Lock, Plan } from '../../lambdas/shared/schemas';
import { buildTrust, type IdentityTrust, keysOfCertificates } from '../../lambdas/signal/identity';
import { type InstanceIdentityFields, sandboxIdentitySigner } from '../../sandbox/identity';
import { awsError, s3Body, lambdaContext as stepContext } from '../fixtures/aws';
import { lockBody } from '../fixtures/lock';
import { planFor, runState, targetConfig } from '../fixtures/target';

/**
 * Shared fixtures for the SSM/SFN-side step tests: a target, a run state, and an S3 that keeps objects.
 * They are the common fixtures (test/fixtures) with this family's own account, execution and ids.
 */

export const BUCKET = 'understudy-runs';
export const PREFIX = '/understudy/test';
export const TOPIC = 'arn:aws:sns:eu-west-1:111122223333:understudy';
export const EXECUTION_NAME = 'web-ami-0123456789abcdef0';
export const EXECUTION_ARN = `arn:aws:states:eu-west-1:111122223333:execution:understudy-replace:${EXECUTION_NAME}`;
export const OLD_ID = 'i-0aaaaaaaaaaaaaaa1';
export const CANDIDATE_ID = 'i-0bbbbbbbbbbbbbbb2';

/** An http-01 target with the schema's default health settings. */
export const makeTarget = (overrides: Record<string, unknown> = {}): TargetConfig =>
  targetConfig({
    allocationId: 'eipalloc-0123abcd',
    image: { imageId: 'ami-0123456789abcdef0' },
    tls: { mode: 'http-01', email: 'ops@example.com' },
    health: {},
    ...overrides,
  });

export const lockFor = (owner = EXECUTION_ARN): Lock => ({
  bucket: BUCKET,
  key: runKeys.lock('web'),
  owner,
  leaseSeconds: LOCK_LEASE_SECONDS,
});

export const makePlan = (target: TargetConfig = makeTarget(), overrides: Partial<Plan> = {}): Plan =>
  planFor({
    target,
    image: { imageId: 'ami-0123456789abcdef0', architecture: 'x86_64', rootDeviceName: '/dev/xvda' },
    old: {
      instanceId: OLD_ID,
      imageId: 'ami-0fedcba9876543210',
      instanceType: 't3.small',
      subnetId: 'subnet-0123abcd',
    },
    eip: { allocationId: 'eipalloc-0123abcd', publicIp: '203.0.113.10', associationId: 'eipassoc-0123abcd' },
    lock: lockFor(),
    ...overrides,
  });

export const makeState = (target: TargetConfig = makeTarget(), plan: Partial<Plan> = {}) => ({
  ...runState({
    execution: {
      arn: EXECUTION_ARN,
      name: EXECUTION_NAME,
      redriveCount: 0,
      startTime: '2026-05-01T10:00:00.000Z',
    },
    run: makePlan(target, plan),
  }),
  launch: { instanceId: CANDIDATE_ID, clientToken: 'f'.repeat(64) },
});

const preconditionFailed = () =>
  awsError('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', 412);

/**
 * An S3 bucket in memory with ETags and the conditional writes the lock relies on (If-None-Match: *,
 * If-Match), failing the way S3 does: 412 PreconditionFailed, NoSuchKey on a missing object.
 */
export const fakeS3 = () => {
  const mock = mockClient(S3Client);
  const objects = new Map<string, { text: string; etag: string }>();
  let version = 0;
  mock.on(GetObjectCommand).callsFake((input: { Key: string }) => {
    const object = objects.get(input.Key);
    if (!object)
      throw new NoSuchKey({
        message: 'The specified key does not exist.',
        $metadata: { httpStatusCode: 404 },
      });
    return { Body: s3Body(object.text), ETag: object.etag };
  });
  mock
    .on(PutObjectCommand)
    .callsFake((input: { Key: string; Body: string; IfNoneMatch?: string; IfMatch?: string }) => {
      const current = objects.get(input.Key);
      if (input.IfNoneMatch === '*' && current) throw preconditionFailed();
      if (input.IfMatch !== undefined && current?.etag !== input.IfMatch) throw preconditionFailed();
      version += 1;
      const etag = `"etag-${version}"`;
      objects.set(input.Key, { text: String(input.Body), etag });
      return { ETag: etag };
    });
  // The runs bucket is versioned: a delete without a VersionId only hides the object behind a marker.
  const noncurrent = new Map<string, { versionId: string; text: string }[]>();
  const markers = new Map<string, string[]>();
  const versionIdOf = (etag: string) => `v-${etag.replace(/\W/g, '')}`;
  mock.on(DeleteObjectCommand).callsFake((input: { Key: string; IfMatch?: string; VersionId?: string }) => {
    const current = objects.get(input.Key);
    if (input.IfMatch !== undefined && current !== undefined && current.etag !== input.IfMatch) {
      throw preconditionFailed();
    }
    if (input.VersionId !== undefined) {
      if (current && versionIdOf(current.etag) === input.VersionId) objects.delete(input.Key);
      noncurrent.set(
        input.Key,
        (noncurrent.get(input.Key) ?? []).filter((v) => v.versionId !== input.VersionId),
      );
      markers.set(
        input.Key,
        (markers.get(input.Key) ?? []).filter((m) => m !== input.VersionId),
      );
      return {};
    }
    if (current) {
      noncurrent.set(input.Key, [
        ...(noncurrent.get(input.Key) ?? []),
        { versionId: versionIdOf(current.etag), text: current.text },
      ]);
    }
    objects.delete(input.Key);
    version += 1;
    markers.set(input.Key, [...(markers.get(input.Key) ?? []), `m-${version}`]);
    return {};
  });
  mock.on(ListObjectVersionsCommand).callsFake((input: { Prefix?: string }) => {
    const under = (key: string) => key.startsWith(input.Prefix ?? '');
    return {
      Versions: [
        ...[...objects]
          .filter(([key]) => under(key))
          .map(([Key, o]) => ({ Key, VersionId: versionIdOf(o.etag), IsLatest: true })),
        ...[...noncurrent]
          .filter(([key]) => under(key))
          .flatMap(([Key, list]) => list.map((v) => ({ Key, VersionId: v.versionId, IsLatest: false }))),
      ],
      DeleteMarkers: [...markers]
        .filter(([key]) => under(key))
        .flatMap(([Key, list]) => list.map((VersionId) => ({ Key, VersionId }))),
      IsTruncated: false,
    };
  });
  /** Every version and delete marker still stored under `prefix`. */
  const versionsUnder = (prefix: string): string[] => [
    ...[...objects.keys()].filter((k) => k.startsWith(prefix)),
    ...[...noncurrent]
      .filter(([k, list]) => k.startsWith(prefix) && list.length > 0)
      .map(([k]) => `${k} (noncurrent)`),
    ...[...markers]
      .filter(([k, list]) => k.startsWith(prefix) && list.length > 0)
      .map(([k]) => `${k} (marker)`),
  ];
  // One page: these buckets hold a handful of keys.
  mock.on(ListObjectsV2Command).callsFake((input: { Prefix?: string }) => ({
    Contents: [...objects.keys()]
      .filter((key) => key.startsWith(input.Prefix ?? ''))
      .sort()
      .map((Key) => ({ Key, LastModified: new Date() })),
    IsTruncated: false,
  }));
  /** Puts `text` (a lock body by default) at the target's lock key, as a new version. */
  const seedLock = (
    owner = EXECUTION_ARN,
    executionName = EXECUTION_NAME,
    text = lockBody(owner, executionName),
  ) => {
    version += 1;
    objects.set(runKeys.lock('web'), { text, etag: `"etag-${version}"` });
  };
  return { mock, objects, seedLock, versionsUnder };
};

/** The parts of a Lambda context the middleware reads. */
export const lambdaContext = () => stepContext('understudy-step');

/**
 * Runs `lines` (AWS-RunShellScript's `commands`) the way the SSM agent does: written to a script file,
 * made executable and started with `sh -c <file>`, so the script's first line decides its shell.
 * Stand-in commands come first on PATH.
 */
export const runScript = async (
  lines: readonly string[],
  standIns: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string; dir: string }> => {
  const dir = mkdtempSync(join(tmpdir(), 'ssm-script-'));
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  for (const [name, text] of Object.entries(standIns)) {
    writeFileSync(join(bin, name), `#!/usr/bin/env bash\n${text}\n`);
    chmodSync(join(bin, name), 0o755);
  }
  const script = join(dir, '_script.sh');
  writeFileSync(script, `${lines.join('\n')}\n`);
  chmodSync(script, 0o755);
  const work = join(dir, 'work');
  mkdirSync(work);
  const out = spawnSync('sh', ['-c', script], {
    cwd: work,
    encoding: 'utf8',
    env: { PATH: `${bin}:/usr/bin:/bin`, STANDIN_LOG: join(dir, 'calls.log') },
  });
  return { code: out.status ?? -1, stdout: out.stdout, stderr: out.stderr, dir: work };
};

/** An agent that is Online, has run nothing yet, and accepts the next command as `commandId`. */
export const ssmReadyToSend = (ssm: AwsClientStub<SSMClient>, commandId: string) => {
  ssm.on(DescribeInstanceInformationCommand).resolves({
    InstanceInformationList: [{ InstanceId: CANDIDATE_ID, PingStatus: 'Online' }],
  });
  ssm.on(ListCommandsCommand).resolves({ Commands: [] });
  ssm.on(SendCommandCommand).resolves({ Command: { CommandId: commandId } });
};

/** The account and Region the fixture's agent events are put in. */
export const EVENT_ACCOUNT = '111122223333';
export const EVENT_REGION = 'eu-west-1';

/** The identity document and signature IMDS would serve the instance, signed with the sandbox's key. */
export const identityOf = (instanceId: string, fields: Partial<InstanceIdentityFields> = {}) =>
  sandboxIdentitySigner().identityOf({
    accountId: EVENT_ACCOUNT,
    region: EVENT_REGION,
    instanceId,
    imageId: 'ami-0123456789abcdef0',
    instanceType: 't3.small',
    availabilityZone: `${EVENT_REGION}a`,
    privateIp: '10.0.1.23',
    pendingTime: Date.parse('2026-05-01T10:00:00Z'),
    ...fields,
  });

/** What the signal function trusts in these tests: the sandbox's key for the fixture's Region. */
export const fixtureTrust = (): IdentityTrust =>
  buildTrust(keysOfCertificates({ [EVENT_REGION]: sandboxIdentitySigner().certificatePem }));

/**
 * A readiness-agent event as EventBridge delivers it, about the candidate. Final events carry the
 * instance's identity, as the agent sends it; a test overrides `identity` to forge one.
 */
export const agentEvent = (detailType: string, detail: Record<string, unknown> = {}) => {
  const instanceId = typeof detail.instanceId === 'string' ? detail.instanceId : CANDIDATE_ID;
  const final = detailType === 'Instance Ready' || detailType === 'Instance Failed';
  return {
    version: '0',
    id: 'a1b2c3',
    source: 'understudy.agent',
    account: EVENT_ACCOUNT,
    time: '2026-05-01T10:05:00Z',
    region: EVENT_REGION,
    resources: [],
    'detail-type': detailType,
    detail: {
      instanceId: CANDIDATE_ID,
      ...(final && /^i-[0-9a-f]{8,17}$/.test(instanceId) ? { identity: identityOf(instanceId) } : {}),
      ...detail,
    },
  };
};

/** EC2 describes every instance as a running candidate Understudy launched. */
export const describeAsCandidates = (ec2: AwsClientStub<EC2Client>, role = 'candidate') =>
  ec2.on(DescribeInstancesCommand).callsFake((input: { InstanceIds?: string[] }) => ({
    Reservations: [
      {
        Instances: (input.InstanceIds ?? []).map((InstanceId) => ({
          InstanceId,
          State: { Name: 'running', Code: 16 },
          Tags: [
            { Key: Tags.target, Value: 'web' },
            { Key: Tags.role, Value: role },
          ],
        })),
      },
    ],
  }));

/** The agent's report of a clean cloud-init run. */
export const readyEvent = (detail: Record<string, unknown> = {}) =>
  agentEvent('Instance Ready', { status: 'done', exitCode: 0, errors: [], ...detail });

type ParameterHook = (name: string) => Promise<void> | void;

/**
 * Parameter Store in memory: PutParameter refuses to overwrite without Overwrite, GetParameter throws
 * ParameterNotFound, DeleteParameters reports absent names instead of failing. Hooks let a test run the
 * other side of a race at an exact point (between a read and its answer, or right after a write).
 */
export const fakeParameters = (
  mock: AwsClientStub<SSMClient>,
  hooks: { afterRead?: ParameterHook; afterPut?: ParameterHook } = {},
) => {
  const params = new Map<string, { value: string; type: string }>();
  mock
    .on(PutParameterCommand)
    .callsFake(async (input: { Name: string; Value: string; Type: string; Overwrite?: boolean }) => {
      if (params.has(input.Name) && !input.Overwrite) {
        throw new ParameterAlreadyExists({ message: 'The parameter already exists.', $metadata: {} });
      }
      params.set(input.Name, { value: input.Value, type: input.Type });
      await hooks.afterPut?.(input.Name);
      return { Version: 1, Tier: 'Standard' };
    });
  mock.on(GetParameterCommand).callsFake(async (input: { Name: string }) => {
    // The value is read first, the answer arrives after the hook: what happened meanwhile is not seen.
    const found = params.get(input.Name);
    await hooks.afterRead?.(input.Name);
    if (!found) throw new ParameterNotFound({ message: '', $metadata: {} });
    return { Parameter: { Name: input.Name, Value: found.value, Type: found.type } };
  });
  mock.on(DeleteParametersCommand).callsFake((input: { Names: string[] }) => {
    const deleted = input.Names.filter((n) => params.delete(n));
    return { DeletedParameters: deleted, InvalidParameters: input.Names.filter((n) => !deleted.includes(n)) };
  });
  return params;
};

/**
 * Step Functions' task callbacks in memory: a token completes once; afterwards (or for a token it never
 * issued) it answers the way the service does, with messages that quote the token.
 */
export const fakeTasks = (mock: AwsClientStub<SFNClient>) => {
  type Task = {
    state: 'open' | 'succeeded' | 'failed';
    output?: unknown;
    error?: string;
    cause?: string;
    heartbeats: number;
  };
  const tasks = new Map<string, Task>();
  const open = (token: string): Task => {
    const task = tasks.get(token);
    if (!task) throw new InvalidToken({ message: `Invalid Token: '${token}'`, $metadata: {} });
    if (task.state !== 'open')
      throw new TaskTimedOut({ message: `Task Timed Out: '${token}'`, $metadata: {} });
    return task;
  };
  mock.on(SendTaskSuccessCommand).callsFake((input: { taskToken: string; output: string }) => {
    Object.assign(open(input.taskToken), { state: 'succeeded', output: JSON.parse(input.output) });
    return {};
  });
  mock
    .on(SendTaskFailureCommand)
    .callsFake((input: { taskToken: string; error?: string; cause?: string }) => {
      Object.assign(open(input.taskToken), { state: 'failed', error: input.error, cause: input.cause });
      return {};
    });
  mock.on(SendTaskHeartbeatCommand).callsFake((input: { taskToken: string }) => {
    open(input.taskToken).heartbeats += 1;
    return {};
  });
  return {
    tasks,
    issue: (token: string) => {
      tasks.set(token, { state: 'open', heartbeats: 0 });
      return token;
    },
  };
};

/** Captures everything the Powertools logger prints (it writes to process.stdout/stderr). */
export const captureLogs = () => {
  const lines: string[] = [];
  const grab = (chunk: unknown) => {
    lines.push(String(chunk));
    return true;
  };
  const out = jest.spyOn(process.stdout, 'write').mockImplementation(grab);
  const err = jest.spyOn(process.stderr, 'write').mockImplementation(grab);
  return {
    text: () => lines.join(''),
    restore: () => {
      out.mockRestore();
      err.mockRestore();
    },
  };
};

/**
 * A stand-in that records its name and exact arguments (NUL-separated, so quotes, spaces and newlines
 * survive), then runs `then` (bash) for its effect or exit status.
 */
export const recorder = (then = '') =>
  `printf '%s\\0' "$(basename "$0")" "$#" "$@" >> "$STANDIN_LOG"\n${then}`;

/** The calls the recorders of one `runScript` saw, in order. */
export const recordedCalls = (workDir: string): { command: string; args: string[] }[] => {
  let fields: string[];
  try {
    fields = readFileSync(join(workDir, '..', 'calls.log'), 'utf8').split('\0');
  } catch {
    return [];
  }
  const calls: { command: string; args: string[] }[] = [];
  for (let i = 0; i + 1 < fields.length; ) {
    const command = fields[i] as string;
    const count = Number(fields[i + 1]);
    calls.push({ command, args: fields.slice(i + 2, i + 2 + count) });
    i += 2 + count;
  }
  return calls;
};

/**
 * An S3 client that can presign: the mocks replace `send` on every S3Client, so these example
 * credentials never leave the test.
 */
export const signingS3Client = (): S3Client =>
  new S3Client({
    region: 'eu-west-1',
    credentials: {
      accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
      secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    },
  });

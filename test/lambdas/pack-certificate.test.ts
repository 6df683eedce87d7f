import 'aws-sdk-client-mock-jest';
import { existsSync, readdirSync } from 'node:fs';
import {
  DescribeInstanceInformationCommand,
  ListCommandsCommand,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { handler } from '../../lambdas/pack-certificate/handler';
import { packCertificate, packScript } from '../../lambdas/pack-certificate/pack-certificate';
import type { TargetConfig } from '../../lambdas/shared/config';
import { runKeys } from '../../lambdas/shared/constants';
import { transferKey, UPLOAD_URL_EXPIRES_SECONDS } from '../../lambdas/shared/tls';
import {
  BUCKET,
  CANDIDATE_ID,
  EXECUTION_ARN,
  EXECUTION_NAME,
  fakeS3,
  lambdaContext,
  makeState,
  makeTarget,
  OLD_ID,
  recordedCalls,
  recorder,
  runScript,
  signingS3Client,
} from './ssm-steps.fixture';

const ssm = mockClient(SSMClient);
let s3: ReturnType<typeof fakeS3>;
const env = { runsBucket: BUCKET };
const restoreTarget = () => makeTarget({ tls: { mode: 'restore' } });
const restoreState = (target: TargetConfig = restoreTarget()) => {
  const { launch: _launch, ...state } = makeState(target);
  return state;
};
const clients = () => ({
  ssm: new SSMClient({ region: 'eu-west-1' }),
  s3: signingS3Client(),
});
const sentCommands = (): string[] =>
  ssm.commandCalls(SendCommandCommand)[0]?.args[0].input.Parameters?.commands ?? [];
const uploadUrl = (): URL => {
  const last = sentCommands().at(-1) ?? '';
  const quoted = /'(https:[^']+)'$/.exec(last)?.[1];
  if (!quoted) throw new Error(`no quoted URL at the end of ${last}`);
  return new URL(quoted);
};

beforeEach(() => {
  ssm.reset();
  s3 = fakeS3();
  s3.seedLock();
  ssm.on(DescribeInstanceInformationCommand).resolves({
    InstanceInformationList: [{ InstanceId: OLD_ID, PingStatus: 'Online' }],
  });
  ssm.on(ListCommandsCommand).resolves({ Commands: [] });
  ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-pack' } });
});

describe('pack-certificate', () => {
  it('sends the pack script to the OLD box (not the candidate), once, as AWS-RunShellScript', async () => {
    const result = await packCertificate(clients(), env, restoreState());

    expect(result).toEqual({
      command: { commandId: 'cmd-pack', instanceId: OLD_ID },
      transferKey: transferKey({ name: EXECUTION_NAME, arn: EXECUTION_ARN }),
    });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 1);
    expect(ssm).toHaveReceivedCommandWith(SendCommandCommand, {
      InstanceIds: [OLD_ID],
      DocumentName: 'AWS-RunShellScript',
      Comment: `understudy:${EXECUTION_NAME}:pack-certificate`,
      TimeoutSeconds: 600,
    });
    expect(ssm).not.toHaveReceivedCommandWith(SendCommandCommand, { InstanceIds: [CANDIDATE_ID] });
    expect(sentCommands().slice(0, -1)).toEqual([
      '#!/bin/bash',
      'set -euo pipefail',
      'umask 077',
      `account="$(sed -n 's/^account[[:space:]]*=[[:space:]]*//p' '/etc/letsencrypt/renewal/www.example.com.conf' 2>/dev/null)" || { echo 'certificate pack failed: cannot read /etc/letsencrypt/renewal/www.example.com.conf' >&2; exit 1; }`,
      `[[ "$account" =~ ^[0-9a-f]{32}$ ]] || { echo 'certificate pack failed: renewal/www.example.com.conf names no ACME account (expected a line "account = " and 32 hex digits)' >&2; exit 1; }`,
      `mapfile -t accounts < <(find /etc/letsencrypt/accounts -mindepth 3 -maxdepth 3 -type d -path "*/directory/$account" -printf 'accounts/%P\\n' 2>/dev/null)`,
      `[[ \${#accounts[@]} -gt 0 ]] || { echo 'certificate pack failed: the ACME account that renewal/www.example.com.conf names is not under /etc/letsencrypt/accounts/*/directory/' >&2; exit 1; }`,
      'versions=()',
      'for kind in cert chain fullchain privkey; do',
      `  link="$(readlink '/etc/letsencrypt/live/www.example.com/'"$kind.pem")" || { echo 'certificate pack failed: /etc/letsencrypt/live/www.example.com/ lacks the links certbot keeps into archive/' >&2; exit 1; }`,
      '  version="$(basename -- "$link")"',
      `  [[ "$version" =~ ^(cert|chain|fullchain|privkey)[0-9]+\\.pem$ ]] || { echo 'certificate pack failed: a link in /etc/letsencrypt/live/www.example.com/ does not point to a certbot version file' >&2; exit 1; }`,
      `  versions+=('archive/www.example.com/'"$version")`,
      'done',
      'transfer="$(mktemp)"',
      `trap 'rm -f "$transfer"' EXIT`,
      `tar -C /etc/letsencrypt -czf "$transfer" 'live/www.example.com' "\${versions[@]}" 'renewal/www.example.com.conf' "\${accounts[@]}"`,
    ]);
    expect(sentCommands().at(-1)).toMatch(
      /^curl -fsS --max-time 60 -X PUT -H 'Content-Type: application\/gzip' --upload-file "\$transfer" 'https:\/\/[^']+'$/,
    );
  });

  it('uploads to a per-execution key under tls/ through a URL that expires in 5 minutes and signs the Content-Type', async () => {
    await packCertificate(clients(), env, restoreState());

    const url = uploadUrl();
    const key = transferKey({ name: EXECUTION_NAME, arn: EXECUTION_ARN });
    expect(key).toMatch(new RegExp(`^tls/${EXECUTION_NAME}/[0-9a-f]{16}\\.tar\\.gz$`));
    expect(`${url.host}${url.pathname}`).toBe(`${BUCKET}.s3.eu-west-1.amazonaws.com/${key}`);
    expect(url.searchParams.get('X-Amz-Expires')).toBe(String(UPLOAD_URL_EXPIRES_SECONDS));
    expect(UPLOAD_URL_EXPIRES_SECONDS).toBe(300);
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('content-type;host');
    expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    expect(url.searchParams.get('x-id')).toBe('PutObject');
  });

  it('leaves the SDK checksum of the empty presign body out of the URL, which S3 would hold the real upload to', async () => {
    await packCertificate(clients(), env, restoreState());

    const params = [...uploadUrl().searchParams.keys()].map((k) => k.toLowerCase());
    expect(
      params.filter((k) => k.startsWith('x-amz-checksum') || k.startsWith('x-amz-sdk-checksum')),
    ).toEqual([]);
  });

  it('derives the key from the execution: a retry signs the same object, another execution another one', () => {
    const again = transferKey({ name: EXECUTION_NAME, arn: EXECUTION_ARN });
    const other = transferKey({ name: EXECUTION_NAME, arn: `${EXECUTION_ARN}-redriven` });

    expect(again).toBe(transferKey({ name: EXECUTION_NAME, arn: EXECUTION_ARN }));
    expect(other).not.toBe(again);
    expect(other.startsWith(`tls/${EXECUTION_NAME}/`)).toBe(true);
  });

  it('reuses the command an earlier attempt sent, and still reports the same transfer key', async () => {
    ssm.on(ListCommandsCommand).resolves({
      Commands: [{ CommandId: 'cmd-earlier', Comment: `understudy:${EXECUTION_NAME}:pack-certificate` }],
    });

    const result = await packCertificate(clients(), env, restoreState());

    expect(result).toEqual({
      command: { commandId: 'cmd-earlier', instanceId: OLD_ID },
      transferKey: transferKey({ name: EXECUTION_NAME, arn: EXECUTION_ARN }),
    });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
    expect(ssm).toHaveReceivedCommandWith(ListCommandsCommand, { InstanceId: OLD_ID });
  });

  it('renews the target lock before it acts, and sends nothing once the lock is lost', async () => {
    const before = s3.objects.get(runKeys.lock('web'))?.etag;
    await packCertificate(clients(), env, restoreState());
    expect(s3.objects.get(runKeys.lock('web'))?.etag).not.toBe(before);

    ssm.resetHistory();
    s3.seedLock('arn:aws:states:eu-west-1:111122223333:execution:understudy-replace:other', 'other');
    await expect(packCertificate(clients(), env, restoreState())).rejects.toMatchObject({ name: 'LockLost' });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
  });

  it("polls with AgentNotOnline while the old box's SSM agent is not Online", async () => {
    ssm.on(DescribeInstanceInformationCommand).resolves({
      InstanceInformationList: [{ InstanceId: OLD_ID, PingStatus: 'ConnectionLost' }],
    });

    await expect(packCertificate(clients(), env, restoreState())).rejects.toMatchObject({
      name: 'AgentNotOnline',
      message: expect.stringContaining(OLD_ID),
    });
  });

  it.each(['http-01', 'dns-01', 'none'])(
    'refuses to run in %s mode, before touching the lock or SSM',
    async (mode) => {
      const target = makeTarget({ tls: { mode, email: 'ops@example.com', hostedZoneId: 'Z0123456789ABC' } });
      const before = s3.objects.get(runKeys.lock('web'))?.etag;

      await expect(packCertificate(clients(), env, restoreState(target))).rejects.toMatchObject({
        name: 'InvalidInput',
        field: 'run.target.tls.mode',
      });
      expect(ssm.calls()).toHaveLength(0);
      expect(s3.objects.get(runKeys.lock('web'))?.etag).toBe(before);
    },
  );

  it('runs end to end through the Lambda handler with the runs bucket from the environment', async () => {
    process.env.RUNS_BUCKET = BUCKET;
    process.env.AWS_ACCESS_KEY_ID = 'AKIAIOSFODNN7EXAMPLE';
    process.env.AWS_SECRET_ACCESS_KEY = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';

    const result = await handler(restoreState(), lambdaContext());

    expect(result).toMatchObject({ command: { commandId: 'cmd-pack', instanceId: OLD_ID } });
    expect(uploadUrl().host).toBe(`${BUCKET}.s3.eu-west-1.amazonaws.com`);
  });
});

describe('the pack script', () => {
  const URL_WITH_QUERY =
    'https://runs.s3.eu-west-1.amazonaws.com/tls/e/k.tar.gz?X-Amz-Signature=abc&x-id=PutObject';
  const ACCOUNT = '0123456789abcdef0123456789abcdef';
  const ACCOUNT_DIR = `accounts/acme-v02.api.letsencrypt.org/directory/${ACCOUNT}`;
  /**
   * The box's certbot directory as the script reads it: sed finds the account line, find its directory,
   * and each live link points to version 3 (as after two renewals).
   */
  const lineage = (overrides: Record<string, string> = {}) => ({
    sed: recorder(`echo ${ACCOUNT}`),
    find: recorder(`echo '${ACCOUNT_DIR}'`),
    readlink: recorder('echo "../../archive/any/$(basename "$1" .pem)3.pem"'),
    // The archive tar would write, so the upload has a file to send.
    tar: recorder('for a; do [ "$prev" = -czf ] && echo packed > "$a"; prev="$a"; done'),
    curl: recorder(
      'for a; do [ "$prev" = --upload-file ] && [ -s "$a" ] || { prev="$a"; continue; }; exit 0; done; exit 9',
    ),
    ...overrides,
  });

  it('packs the live links, the current version of each archive file, the renewal config and the ACME account it names, uploads the file, and removes it on exit', async () => {
    const run = await runScript(packScript(restoreTarget(), URL_WITH_QUERY), lineage());

    expect(run.code).toBe(0);
    const calls = recordedCalls(run.dir);
    const tar = calls.find((c) => c.command === 'tar');
    const file = tar?.args[3] ?? '';
    expect(calls.find((c) => c.command === 'sed')?.args.at(-1)).toBe(
      '/etc/letsencrypt/renewal/www.example.com.conf',
    );
    expect(calls.filter((c) => c.command === 'readlink').map((c) => c.args)).toEqual(
      ['cert', 'chain', 'fullchain', 'privkey'].map((k) => [
        `/etc/letsencrypt/live/www.example.com/${k}.pem`,
      ]),
    );
    expect(calls.find((c) => c.command === 'find')?.args).toContain(`*/directory/${ACCOUNT}`);
    expect(tar?.args).toEqual([
      '-C',
      '/etc/letsencrypt',
      '-czf',
      file,
      'live/www.example.com',
      'archive/www.example.com/cert3.pem',
      'archive/www.example.com/chain3.pem',
      'archive/www.example.com/fullchain3.pem',
      'archive/www.example.com/privkey3.pem',
      'renewal/www.example.com.conf',
      ACCOUNT_DIR,
    ]);
    expect(calls.find((c) => c.command === 'curl')?.args).toEqual([
      '-fsS',
      '--max-time',
      '60',
      '-X',
      'PUT',
      '-H',
      'Content-Type: application/gzip',
      '--upload-file',
      file,
      URL_WITH_QUERY,
    ]);
    expect(file).not.toBe('');
    expect(existsSync(file)).toBe(false);
  });

  it.each([
    ['names no account', { sed: recorder() }, 'names no ACME account'],
    [
      'names something other than an account id',
      { sed: recorder("echo '../../../../root'") },
      'names no ACME account',
    ],
    [
      'cannot be read',
      { sed: recorder('exit 2') },
      'cannot read /etc/letsencrypt/renewal/www.example.com.conf',
    ],
    [
      'names an account that is not on the box',
      { find: recorder() },
      'is not under /etc/letsencrypt/accounts/*/directory/',
    ],
  ])(
    'stops with a one-line reason, packing nothing, when the renewal config %s',
    async (_case, standIns, reason) => {
      const run = await runScript(packScript(restoreTarget(), URL_WITH_QUERY), lineage(standIns));

      expect(run.code).toBe(1);
      expect(run.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^certificate pack failed: /)]);
      expect(run.stderr).toContain(reason);
      expect(recordedCalls(run.dir).map((c) => c.command)).not.toContain('tar');
    },
  );

  it.each([
    ['is not a link', recorder('exit 1'), 'lacks the links certbot keeps into archive/'],
    [
      'points to a file certbot does not name so',
      recorder("echo '../../archive/x/privkey.pem.bak'"),
      'does not point to a certbot version file',
    ],
  ])(
    'stops with a one-line reason, packing nothing, when a live file %s',
    async (_case, readlink, reason) => {
      const run = await runScript(packScript(restoreTarget(), URL_WITH_QUERY), lineage({ readlink }));

      expect(run.code).toBe(1);
      expect(run.stderr.trim().split('\n')).toEqual([expect.stringContaining(reason)]);
      expect(recordedCalls(run.dir).map((c) => c.command)).not.toContain('tar');
    },
  );

  it('fails, and still removes the temporary file, when the upload fails', async () => {
    const run = await runScript(
      packScript(restoreTarget(), URL_WITH_QUERY),
      lineage({ curl: recorder("echo 'curl: (22) The requested URL returned error: 403' >&2; exit 22") }),
    );

    expect(run.code).toBe(22);
    expect(run.stderr).toContain('403');
    const file = recordedCalls(run.dir).find((c) => c.command === 'tar')?.args[3] ?? '';
    expect(existsSync(file)).toBe(false);
  });

  it('passes a hostile domain and URL as single literal words and runs nothing from them', async () => {
    const domain = `x'; touch pwned; echo '$(touch pwned2)`;
    const url = `https://h/?a='$(touch pwned3)'&b=\`touch pwned4\``;
    const run = await runScript(
      packScript({ ...restoreTarget(), domain }, url),
      lineage({ curl: recorder() }),
    );

    expect(run.code).toBe(0);
    expect(readdirSync(run.dir)).toEqual([]);
    const calls = recordedCalls(run.dir);
    expect(calls.find((c) => c.command === 'sed')?.args.at(-1)).toBe(
      `/etc/letsencrypt/renewal/${domain}.conf`,
    );
    expect(calls.find((c) => c.command === 'readlink')?.args).toEqual([
      `/etc/letsencrypt/live/${domain}/cert.pem`,
    ]);
    expect(calls.find((c) => c.command === 'tar')?.args.slice(4)).toEqual([
      `live/${domain}`,
      ...['cert3', 'chain3', 'fullchain3', 'privkey3'].map((v) => `archive/${domain}/${v}.pem`),
      `renewal/${domain}.conf`,
      ACCOUNT_DIR,
    ]);
    expect(calls.find((c) => c.command === 'curl')?.args.at(-1)).toBe(url);
  });
});

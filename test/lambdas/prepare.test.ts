import 'aws-sdk-client-mock-jest';
import { existsSync, readdirSync } from 'node:fs';
import { GetObjectCommand, S3ServiceException } from '@aws-sdk/client-s3';
import {
  DescribeInstanceInformationCommand,
  InvalidInstanceId,
  ListCommandsCommand,
  SendCommandCommand,
  SSMClient,
  SSMServiceException,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { handler } from '../../lambdas/prepare/handler';
import {
  dns01Commands,
  localCheckCommands,
  prepare,
  prepareScript,
  restoreCommands,
  tlsCommands,
} from '../../lambdas/prepare/prepare';
import { createClients } from '../../lambdas/shared/clients';
import { commandComment } from '../../lambdas/shared/commands';
import type { TargetConfig } from '../../lambdas/shared/config';
import { runKeys } from '../../lambdas/shared/constants';
import { DOWNLOAD_URL_EXPIRES_SECONDS, localTlsCheckCommands, transferKey } from '../../lambdas/shared/tls';
import {
  BUCKET,
  CANDIDATE_ID,
  EXECUTION_ARN,
  EXECUTION_NAME,
  fakeS3,
  lambdaContext,
  makeState,
  makeTarget,
  recordedCalls,
  recorder,
  runScript,
  signingS3Client,
  ssmReadyToSend,
} from './ssm-steps.fixture';

const ssm = mockClient(SSMClient);
let s3: ReturnType<typeof fakeS3>;
const ENV = { runsBucket: BUCKET };

beforeEach(() => {
  ssm.reset();
  s3 = fakeS3();
  s3.seedLock();
  ssmReadyToSend(ssm, 'cmd-new');
});

describe('prepare', () => {
  it("sends the local app check once, with the site's Host header, as AWS-RunShellScript", async () => {
    const result = await prepare(
      createClients(),
      ENV,
      makeState(makeTarget({ health: { path: '/healthz' } })),
    );

    expect(result).toEqual({ command: { commandId: 'cmd-new', instanceId: CANDIDATE_ID } });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 1);
    expect(ssm).toHaveReceivedCommandWith(SendCommandCommand, {
      InstanceIds: [CANDIDATE_ID],
      DocumentName: 'AWS-RunShellScript',
      Comment: `understudy:${EXECUTION_NAME}:prepare`,
      TimeoutSeconds: 600,
      Parameters: {
        commands: [
          '#!/bin/bash',
          'set -euo pipefail',
          "curl -fsS --max-time 10 -H 'Host: www.example.com' 'http://127.0.0.1/healthz'",
        ],
        executionTimeout: ['600'],
      },
    });
  });

  it('renews the target lock before it acts', async () => {
    const before = s3.objects.get(runKeys.lock('web'))?.etag;

    await prepare(createClients(), ENV, makeState());

    expect(s3.objects.get(runKeys.lock('web'))?.etag).not.toBe(before);
    expect(JSON.parse(s3.objects.get(runKeys.lock('web'))?.text ?? '{}').owner).toBe(EXECUTION_ARN);
  });

  it('stops with LockLost and sends nothing when another execution holds the lock', async () => {
    s3.seedLock('arn:aws:states:eu-west-1:111122223333:execution:understudy-replace:other', 'other');

    await expect(prepare(createClients(), ENV, makeState())).rejects.toMatchObject({ name: 'LockLost' });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
  });

  it('retries (Transient) when S3 throttles the lock renewal, and sends nothing yet', async () => {
    s3.mock.on(GetObjectCommand).rejects(
      new S3ServiceException({
        name: 'SlowDown',
        $fault: 'server',
        $metadata: { httpStatusCode: 503 },
        message: 'slow down',
      }),
    );

    await expect(prepare(createClients(), ENV, makeState())).rejects.toMatchObject({ name: 'Transient' });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
  });

  it('reuses a command already sent by an earlier attempt', async () => {
    ssm.on(ListCommandsCommand).resolves({
      Commands: [
        { CommandId: 'cmd-other', Comment: 'understudy:another-run:prepare' },
        { CommandId: 'cmd-earlier', Comment: `understudy:${EXECUTION_NAME}:prepare` },
      ],
    });

    const result = await prepare(createClients(), ENV, makeState());

    expect(result.command.commandId).toBe('cmd-earlier');
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
    expect(ssm).toHaveReceivedCommandWith(ListCommandsCommand, { InstanceId: CANDIDATE_ID });
  });

  it('pages through ListCommands before deciding that no earlier attempt sent the command', async () => {
    ssm
      .on(ListCommandsCommand)
      .resolvesOnce({ Commands: [{ CommandId: 'cmd-x', Comment: 'unrelated' }], NextToken: 'page-2' })
      .resolvesOnce({
        Commands: [{ CommandId: 'cmd-earlier', Comment: `understudy:${EXECUTION_NAME}:prepare` }],
      });

    const result = await prepare(createClients(), ENV, makeState());

    expect(result.command.commandId).toBe('cmd-earlier');
    expect(ssm).toHaveReceivedCommandWith(ListCommandsCommand, { NextToken: 'page-2' });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
  });

  it.each([
    ['not registered yet', []],
    ['ConnectionLost', [{ InstanceId: CANDIDATE_ID, PingStatus: 'ConnectionLost' as const }]],
  ])('polls with AgentNotOnline while the SSM agent is %s', async (_label, list) => {
    ssm.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: list });

    await expect(prepare(createClients(), ENV, makeState())).rejects.toMatchObject({
      name: 'AgentNotOnline',
      message: expect.stringContaining(CANDIDATE_ID),
    });
    expect(ssm).toHaveReceivedCommandTimes(SendCommandCommand, 0);
  });

  it('treats InvalidInstanceId from SendCommand as an agent that has not registered yet', async () => {
    ssm
      .on(SendCommandCommand)
      .rejects(new InvalidInstanceId({ message: 'Instances not in a valid state', $metadata: {} }));

    await expect(prepare(createClients(), ENV, makeState())).rejects.toMatchObject({
      name: 'AgentNotOnline',
    });
  });

  it('surfaces throttling as Transient for the state machine to retry', async () => {
    ssm.on(SendCommandCommand).rejects(
      new SSMServiceException({
        name: 'ThrottlingException',
        $fault: 'client',
        $metadata: {},
        message: 'Rate exceeded',
      }),
    );

    await expect(prepare(createClients(), ENV, makeState())).rejects.toMatchObject({ name: 'Transient' });
  });

  it('fails with CommandFailed naming the call when SSM refuses the command', async () => {
    ssm.on(SendCommandCommand).rejects(
      new SSMServiceException({
        name: 'InvalidDocument',
        $fault: 'client',
        $metadata: {},
        message: 'no such document',
      }),
    );

    await expect(prepare(createClients(), ENV, makeState())).rejects.toMatchObject({
      name: 'CommandFailed',
      message: expect.stringMatching(/SendCommand for i-0b.*InvalidDocument/),
    });
  });

  it('runs end to end through the Lambda handler', async () => {
    process.env.RUNS_BUCKET = BUCKET;
    const result = await handler(makeState(), lambdaContext());

    expect(result).toEqual({ command: { commandId: 'cmd-new', instanceId: CANDIDATE_ID } });
  });

  it('refuses an event without a candidate, naming the field', async () => {
    const { launch: _launch, ...withoutLaunch } = makeState();

    await expect(handler(withoutLaunch, lambdaContext())).rejects.toMatchObject({
      name: 'InvalidInput',
      message: expect.stringContaining('event.launch'),
    });
  });
});

describe('the local app check script', () => {
  // A stand-in curl that answers with $BODY, or fails like `curl -f` on an error status.
  // The body goes through a quoted heredoc so the stand-in itself never expands it.
  const curl = (body: string, exit = 0) =>
    exit
      ? `echo 'curl: (22) The requested URL returned error: 502' >&2; exit ${exit}`
      : `cat <<'END_OF_BODY'\n${body}\nEND_OF_BODY`;

  it('passes when the app answers with the expected text', async () => {
    const lines = prepareScript(makeTarget({ health: { bodyContains: 'all good' } }));

    const run = await runScript(lines, { curl: curl('<p>all good</p>') });

    expect(run.code).toBe(0);
  });

  it('fails when the body lacks the expected text', async () => {
    const lines = prepareScript(makeTarget({ health: { bodyContains: 'all good' } }));

    const run = await runScript(lines, { curl: curl('<p>maintenance</p>') });

    expect(run.code).toBe(1);
    expect(run.stderr).toContain('local app check failed');
  });

  it('fails when curl gets an error status', async () => {
    const run = await runScript(prepareScript(makeTarget()), { curl: curl('', 22) });

    expect(run.code).toBe(22);
    expect(run.stderr).toContain('502');
  });

  it('matches a hostile bodyContains literally and runs nothing from it', async () => {
    const needle = `'; touch pwned; echo '$(touch pwned2)`;
    const lines = prepareScript(makeTarget({ health: { bodyContains: needle } }));

    const run = await runScript(lines, { curl: curl(`before ${needle} after`) });

    expect(run.code).toBe(0);
    expect(readdirSync(run.dir)).toEqual([]);
  });

  it('has no TLS work before the switch in the http-01 and none modes', () => {
    expect(tlsCommands(makeTarget())).toEqual([]);
    expect(tlsCommands(makeTarget({ tls: { mode: 'none' } }))).toEqual([]);
  });

  it('quotes the Host header and the URL as single words', () => {
    expect(localCheckCommands(makeTarget({ health: { path: '/a-b/c.html' } }))).toEqual([
      "curl -fsS --max-time 10 -H 'Host: www.example.com' 'http://127.0.0.1/a-b/c.html'",
    ]);
  });
});

describe('commandComment', () => {
  it('keeps the longest execution names within the 100-character Comment limit, still unique per execution', () => {
    const a = commandComment(`${'a'.repeat(79)}1`, 'certificate');
    const b = commandComment(`${'a'.repeat(79)}2`, 'certificate');

    expect(a.length).toBeLessThanOrEqual(100);
    expect(a).not.toBe(b);
    expect(a.endsWith(':certificate')).toBe(true);
  });
});

// restore and dns-01 (issue 4): TLS on the new box before the switch.

const KEY = transferKey({ name: EXECUTION_NAME, arn: EXECUTION_ARN });
const restoreTarget = () => makeTarget({ tls: { mode: 'restore' }, health: { path: '/healthz' } });
const dns01Target = () =>
  makeTarget({
    tls: { mode: 'dns-01', email: 'ops@example.com', hostedZoneId: 'Z0123456789ABCDEFGHIJ' },
    health: { path: '/healthz' },
  });
const packResult = (key = KEY) => ({
  command: { commandId: 'cmd-pack', instanceId: 'i-0aaaaaaaaaaaaaaa1' },
  transferKey: key,
  result: { status: 'Success', output: '' },
});
const restoreState = (key = KEY) => ({ ...makeState(restoreTarget()), pack: packResult(key) });
const signingClients = () => ({
  ...createClients(),
  s3: signingS3Client(),
});
const sentCommands = (): string[] =>
  ssm.commandCalls(SendCommandCommand)[0]?.args[0].input.Parameters?.commands ?? [];

const TLS_CHECK = [
  "curl -fsS --max-time 10 --resolve 'www.example.com:443:127.0.0.1' -o /dev/null 'https://www.example.com/healthz' || { echo 'local TLS check failed: nginx on this box did not answer https://www.example.com/healthz with a certificate valid for www.example.com' >&2; exit 1; }",
  "{ openssl s_client -connect 127.0.0.1:443 -servername 'www.example.com' </dev/null 2>/dev/null || true; } | openssl x509 -noout -checkend 1209600 || { echo 'local TLS check failed: the certificate nginx serves for www.example.com expires within 14 days (health.certificateMinDaysLeft)' >&2; exit 1; }",
];
// certbot's nginx installer redirects plain HTTP for the domain: the app is asked over HTTPS.
const APP_CHECK =
  "curl -fsS --max-time 10 --resolve 'www.example.com:443:127.0.0.1' 'https://www.example.com/healthz'";
const ACCOUNT_CHECK = [
  `account="$(sed -n 's/^account[[:space:]]*=[[:space:]]*//p' '/etc/letsencrypt/renewal/www.example.com.conf' 2>/dev/null)" || { echo 'certificate restore failed: cannot read /etc/letsencrypt/renewal/www.example.com.conf' >&2; exit 1; }`,
  `[[ "$account" =~ ^[0-9a-f]{32}$ ]] || { echo 'certificate restore failed: renewal/www.example.com.conf names no ACME account (expected a line "account = " and 32 hex digits)' >&2; exit 1; }`,
  `mapfile -t accounts < <(find /etc/letsencrypt/accounts -mindepth 3 -maxdepth 3 -type d -path "*/directory/$account" -printf 'accounts/%P\\n' 2>/dev/null)`,
  `[[ \${#accounts[@]} -gt 0 ]] || { echo 'certificate restore failed: the ACME account that renewal/www.example.com.conf names is not under /etc/letsencrypt/accounts/*/directory/' >&2; exit 1; }`,
];

describe('prepare in restore mode', () => {
  it("fetches the pack step's transfer, installs it with certbot, reloads nginx, then runs the TLS and app checks", async () => {
    const result = await prepare(signingClients(), ENV, restoreState());

    expect(result).toEqual({ command: { commandId: 'cmd-new', instanceId: CANDIDATE_ID } });
    expect(ssm).toHaveReceivedCommandWith(SendCommandCommand, {
      InstanceIds: [CANDIDATE_ID],
      Comment: `understudy:${EXECUTION_NAME}:prepare`,
    });
    const lines = sentCommands();
    const download = lines[5] ?? '';
    expect(download).toMatch(/^curl -fsS --max-time 60 -o "\$transfer" 'https:\/\/[^']+'$/);
    expect(lines).toEqual([
      '#!/bin/bash',
      'set -euo pipefail',
      'umask 077',
      'transfer="$(mktemp)"',
      `trap 'rm -f "$transfer"' EXIT`,
      download,
      'mkdir -p /etc/letsencrypt',
      'tar -C /etc/letsencrypt -xzf "$transfer"',
      ...ACCOUNT_CHECK,
      "certbot install --nginx --cert-name 'www.example.com' --non-interactive",
      'nginx -t',
      'systemctl reload nginx',
      ...TLS_CHECK,
      APP_CHECK,
    ]);
  });

  it('downloads through a GET URL for exactly the transfer key, valid 2 minutes, without checksum parameters', async () => {
    await prepare(signingClients(), ENV, restoreState());

    const url = new URL(/'(https:[^']+)'$/.exec(sentCommands()[5] ?? '')?.[1] ?? 'https://missing');
    expect(`${url.host}${url.pathname}`).toBe(`${BUCKET}.s3.eu-west-1.amazonaws.com/${KEY}`);
    expect(url.searchParams.get('X-Amz-Expires')).toBe(String(DOWNLOAD_URL_EXPIRES_SECONDS));
    expect(DOWNLOAD_URL_EXPIRES_SECONDS).toBe(120);
    expect(url.searchParams.get('x-id')).toBe('GetObject');
    expect([...url.searchParams.keys()].filter((k) => k.toLowerCase().includes('checksum'))).toEqual([]);
  });

  it('refuses a restore without the pack result, before the lock or SSM is touched', async () => {
    const { pack: _pack, ...withoutPack } = restoreState();
    const before = s3.objects.get(runKeys.lock('web'))?.etag;

    await expect(prepare(signingClients(), ENV, withoutPack)).rejects.toMatchObject({
      name: 'InvalidInput',
      field: 'pack',
    });
    expect(ssm.calls()).toHaveLength(0);
    expect(s3.objects.get(runKeys.lock('web'))?.etag).toBe(before);
  });

  it("refuses a transfer key outside this execution's prefix, so a forged state cannot fetch another run's key", async () => {
    await expect(
      prepare(signingClients(), ENV, restoreState('tls/another-run/0123456789abcdef.tar.gz')),
    ).rejects.toMatchObject({ name: 'InvalidInput', field: 'pack.transferKey' });
    expect(ssm.calls()).toHaveLength(0);
  });

  it('refuses at the boundary a pack result whose key is not under tls/', async () => {
    process.env.RUNS_BUCKET = BUCKET;
    await expect(handler(restoreState('locks/web.json'), lambdaContext())).rejects.toMatchObject({
      name: 'InvalidInput',
      message: expect.stringContaining('event.pack.transferKey'),
    });
  });
});

describe('prepare in dns-01 mode', () => {
  it('runs certbot with the Route 53 plugin before the switch, then the TLS and app checks', async () => {
    await prepare(createClients(), ENV, makeState(dns01Target()));

    expect(sentCommands()).toEqual([
      '#!/bin/bash',
      'set -euo pipefail',
      "certbot run -a dns-route53 -i nginx -d 'www.example.com' --non-interactive --agree-tos -m 'ops@example.com' --keep-until-expiring",
      'nginx -t',
      'systemctl reload nginx',
      ...TLS_CHECK,
      APP_CHECK,
    ]);
  });
});

describe('the TLS scripts', () => {
  const hostile = `x'; touch pwned; echo '$(touch pwned2)`;

  it('restore: every value is one single-quoted word', () => {
    const target = { ...restoreTarget(), domain: hostile };
    const url = "https://h/k?a='b'&c=$(d)";

    expect(restoreCommands(target, url)).toEqual([
      'umask 077',
      'transfer="$(mktemp)"',
      `trap 'rm -f "$transfer"' EXIT`,
      `curl -fsS --max-time 60 -o "$transfer" 'https://h/k?a='\\''b'\\''&c=$(d)'`,
      'mkdir -p /etc/letsencrypt',
      'tar -C /etc/letsencrypt -xzf "$transfer"',
      `account="$(sed -n 's/^account[[:space:]]*=[[:space:]]*//p' '/etc/letsencrypt/renewal/x'\\''; touch pwned; echo '\\''$(touch pwned2).conf' 2>/dev/null)" || { echo 'certificate restore failed: cannot read /etc/letsencrypt/renewal/x'\\''; touch pwned; echo '\\''$(touch pwned2).conf' >&2; exit 1; }`,
      `[[ "$account" =~ ^[0-9a-f]{32}$ ]] || { echo 'certificate restore failed: renewal/x'\\''; touch pwned; echo '\\''$(touch pwned2).conf names no ACME account (expected a line "account = " and 32 hex digits)' >&2; exit 1; }`,
      `mapfile -t accounts < <(find /etc/letsencrypt/accounts -mindepth 3 -maxdepth 3 -type d -path "*/directory/$account" -printf 'accounts/%P\\n' 2>/dev/null)`,
      `[[ \${#accounts[@]} -gt 0 ]] || { echo 'certificate restore failed: the ACME account that renewal/x'\\''; touch pwned; echo '\\''$(touch pwned2).conf names is not under /etc/letsencrypt/accounts/*/directory/' >&2; exit 1; }`,
      `certbot install --nginx --cert-name 'x'\\''; touch pwned; echo '\\''$(touch pwned2)' --non-interactive`,
      'nginx -t',
      'systemctl reload nginx',
    ]);
  });

  it('dns-01: the domain and the e-mail are single-quoted words', () => {
    const target = {
      ...dns01Target(),
      domain: hostile,
      tls: { ...dns01Target().tls, email: "o'hara@example.com" },
    };

    expect(dns01Commands(target)).toEqual([
      `certbot run -a dns-route53 -i nginx -d 'x'\\''; touch pwned; echo '\\''$(touch pwned2)' --non-interactive --agree-tos -m 'o'\\''hara@example.com' --keep-until-expiring`,
      'nginx -t',
      'systemctl reload nginx',
    ]);
  });

  it('the app check asks over HTTPS in restore and dns-01, where certbot redirects plain HTTP, and still reads the body', () => {
    for (const target of [restoreTarget(), dns01Target()]) {
      const withBody = { ...target, health: { ...target.health, bodyContains: 'all good' } };
      expect(localCheckCommands(withBody)).toEqual([
        `curl -fsS --max-time 10 --resolve 'www.example.com:443:127.0.0.1' 'https://www.example.com/healthz' | grep -F -- 'all good' > /dev/null || { echo 'local app check failed: no answer, an error status, or a body without "all good"' >&2; exit 1; }`,
      ]);
    }
  });

  it('dns-01 without an e-mail is refused, naming the field', () => {
    const target = { ...dns01Target(), tls: { mode: 'dns-01' as const, hostedZoneId: 'Z0123456789ABC' } };
    expect(() => dns01Commands(target)).toThrow(expect.objectContaining({ field: 'run.target.tls.email' }));
  });

  it('the local TLS check pins the domain to loopback, and holds the certificate to certificateMinDaysLeft', () => {
    expect(localTlsCheckCommands(restoreTarget())).toEqual(TLS_CHECK);
    const lax = makeTarget({ tls: { mode: 'restore' }, health: { path: '/', certificateMinDaysLeft: 0 } });
    expect(localTlsCheckCommands(lax)[1]).toMatch(/\| openssl x509 -noout -checkend 0 \|\| /);
  });

  it('the local TLS check quotes the domain and the path', () => {
    const [curl, openssl] = localTlsCheckCommands({ ...restoreTarget(), domain: hostile });
    expect(curl).toMatch(
      /^curl -fsS --max-time 10 --resolve 'x'\\''; touch pwned; echo '\\''\$\(touch pwned2\):443:127\.0\.0\.1' -o \/dev\/null 'https:\/\/x'\\''; /,
    );
    expect(openssl).toMatch(
      /^\{ openssl s_client -connect 127\.0\.0\.1:443 -servername 'x'\\''; touch pwned; echo '\\''\$\(touch pwned2\)' <\/dev\/null /,
    );
  });

  it('a mode preflight did not resolve, or restore without a transfer, is refused', () => {
    const unresolved: TargetConfig = { ...restoreTarget(), tls: {} };
    expect(() => tlsCommands(unresolved)).toThrow(expect.objectContaining({ field: 'run.target.tls.mode' }));
    expect(() => tlsCommands(restoreTarget())).toThrow(expect.objectContaining({ field: 'pack' }));
  });
});

describe('the TLS scripts, run', () => {
  /** curl: writes the download, answers the app check with `ok`, and exits `tlsExit` for the TLS check. */
  const curl = (tlsExit = 0) =>
    recorder(
      `case " $* " in *" -o /dev/null "*) exit ${tlsExit};; esac
for a; do [ "$prev" = -o ] && echo transfer > "$a"; prev="$a"; done
echo ok`,
    );
  const ACCOUNT_DIR = 'accounts/acme-v02.api.letsencrypt.org/directory/0123456789abcdef0123456789abcdef';
  const standIns = (overrides: Record<string, string> = {}) => ({
    curl: curl(),
    mkdir: recorder(),
    tar: recorder(),
    // The unpacked renewal config names an account, and its directory came along.
    sed: recorder('echo 0123456789abcdef0123456789abcdef'),
    find: recorder(`echo '${ACCOUNT_DIR}'`),
    certbot: recorder(),
    nginx: recorder(),
    systemctl: recorder(),
    openssl: recorder(),
    ...overrides,
  });
  const URL_WITH_QUERY =
    'https://runs.s3.eu-west-1.amazonaws.com/tls/e/k.tar.gz?X-Amz-Signature=abc&x-id=GetObject';

  it('restore runs every step in order with the exact arguments, and removes the transfer file', async () => {
    const run = await runScript(prepareScript(restoreTarget(), URL_WITH_QUERY), standIns());

    expect(run.code).toBe(0);
    const calls = recordedCalls(run.dir);
    const file = calls[0]?.args[4] ?? '';
    expect(calls).toEqual([
      { command: 'curl', args: ['-fsS', '--max-time', '60', '-o', file, URL_WITH_QUERY] },
      { command: 'mkdir', args: ['-p', '/etc/letsencrypt'] },
      { command: 'tar', args: ['-C', '/etc/letsencrypt', '-xzf', file] },
      {
        command: 'sed',
        args: [
          '-n',
          's/^account[[:space:]]*=[[:space:]]*//p',
          '/etc/letsencrypt/renewal/www.example.com.conf',
        ],
      },
      {
        command: 'find',
        args: [
          '/etc/letsencrypt/accounts',
          '-mindepth',
          '3',
          '-maxdepth',
          '3',
          '-type',
          'd',
          '-path',
          '*/directory/0123456789abcdef0123456789abcdef',
          '-printf',
          'accounts/%P\\n',
        ],
      },
      {
        command: 'certbot',
        args: ['install', '--nginx', '--cert-name', 'www.example.com', '--non-interactive'],
      },
      { command: 'nginx', args: ['-t'] },
      { command: 'systemctl', args: ['reload', 'nginx'] },
      {
        command: 'curl',
        args: [
          '-fsS',
          '--max-time',
          '10',
          '--resolve',
          'www.example.com:443:127.0.0.1',
          '-o',
          '/dev/null',
          'https://www.example.com/healthz',
        ],
      },
      // s_client and x509 run side by side in one pipeline: in either order.
      expect.objectContaining({ command: 'openssl' }),
      expect.objectContaining({ command: 'openssl' }),
      {
        command: 'curl',
        args: [
          '-fsS',
          '--max-time',
          '10',
          '--resolve',
          'www.example.com:443:127.0.0.1',
          'https://www.example.com/healthz',
        ],
      },
    ]);
    expect(calls.filter((c) => c.command === 'openssl').map((c) => c.args)).toEqual(
      expect.arrayContaining([
        ['s_client', '-connect', '127.0.0.1:443', '-servername', 'www.example.com'],
        ['x509', '-noout', '-checkend', '1209600'],
      ]),
    );
    expect(file).not.toBe('');
    expect(existsSync(file)).toBe(false);
  });

  it('restore stops with a one-line reason, before certbot touches nginx, when the transfer lacks the ACME account its renewal config names', async () => {
    const run = await runScript(
      prepareScript(restoreTarget(), URL_WITH_QUERY),
      standIns({ find: recorder() }),
    );

    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      'certificate restore failed: the ACME account that renewal/www.example.com.conf names is not under /etc/letsencrypt/accounts/*/directory/',
    );
    expect(recordedCalls(run.dir).map((c) => c.command)).not.toContain('certbot');
  });

  it('checks the expiry of the certificate nginx serves even when s_client is cut off after x509 read it, as pipefail would count', async () => {
    const run = await runScript(
      prepareScript(dns01Target()),
      standIns({ openssl: recorder('case "$1" in s_client) kill -PIPE $$;; esac') }),
    );

    expect(run.code).toBe(0);
  });

  it('stops with a one-line reason when nginx does not serve a verified certificate locally', async () => {
    const run = await runScript(prepareScript(restoreTarget(), URL_WITH_QUERY), standIns({ curl: curl(60) }));

    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      'local TLS check failed: nginx on this box did not answer https://www.example.com/healthz with a certificate valid for www.example.com',
    );
    expect(recordedCalls(run.dir).map((c) => c.command)).not.toContain('openssl');
  });

  it('stops with a one-line reason when the certificate expires within the margin', async () => {
    const run = await runScript(
      prepareScript(dns01Target()),
      standIns({ openssl: recorder("echo 'Certificate will expire'; exit 1") }),
    );

    expect(run.code).toBe(1);
    expect(run.stderr).toContain('expires within 14 days (health.certificateMinDaysLeft)');
    // The app check after it never runs.
    expect(recordedCalls(run.dir).filter((c) => c.command === 'curl')).toHaveLength(1);
  });

  it('dns-01: a certbot failure (Route 53 refused) stops the script before nginx is touched', async () => {
    const run = await runScript(
      prepareScript(dns01Target()),
      standIns({
        certbot: recorder(
          "echo 'An error occurred (AccessDenied) when calling ChangeResourceRecordSets' >&2; exit 1",
        ),
      }),
    );

    expect(run.code).toBe(1);
    expect(run.stderr).toContain('AccessDenied');
    expect(recordedCalls(run.dir).map((c) => c.command)).toEqual(['certbot']);
  });

  it('runs nothing from a hostile domain, e-mail or URL: each arrives as one literal argument', async () => {
    const domain = `x'; touch pwned; echo '$(touch pwned2)`;
    const url = `https://h/?a='$(touch pwned3)'&b=\`touch pwned4\``;
    const restore = await runScript(prepareScript({ ...restoreTarget(), domain }, url), standIns());
    const target = {
      ...dns01Target(),
      domain,
      tls: { ...dns01Target().tls, email: "o'$(touch pwned5)@x.io" },
    };
    const dns01 = await runScript(prepareScript(target), standIns());

    for (const run of [restore, dns01]) {
      expect(run.code).toBe(0);
      expect(readdirSync(run.dir)).toEqual([]);
    }
    const restoreCalls = recordedCalls(restore.dir);
    expect(restoreCalls[0]?.args.at(-1)).toBe(url);
    expect(restoreCalls.find((c) => c.command === 'certbot')?.args[3]).toBe(domain);
    expect(recordedCalls(dns01.dir)[0]?.args).toEqual([
      'run',
      '-a',
      'dns-route53',
      '-i',
      'nginx',
      '-d',
      domain,
      '--non-interactive',
      '--agree-tos',
      '-m',
      "o'$(touch pwned5)@x.io",
      '--keep-until-expiring',
    ]);
  });
});

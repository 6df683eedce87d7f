import { existsSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { GetCommandInvocationCommand, SendCommandCommand } from '@aws-sdk/client-ssm';
import { createClients } from '../../lambdas/shared/clients';
import type { ServedCertificate } from '../../sandbox/contracts';
import { runMeasured, startWorld, type World } from './helpers';

const certbotLog = (world: World, instanceId: string): string => {
  const path = join(world.sandbox.instanceDir(instanceId), 'var/log/letsencrypt/letsencrypt.log');
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
};

/** Runs a script on a box through SSM Run Command, as the steps do, and waits (virtual time) for it. */
const runOnBox = async (world: World, instanceId: string, commands: string[]) => {
  const { ssm } = createClients();
  const sent = await ssm.send(
    new SendCommandCommand({
      DocumentName: 'AWS-RunShellScript',
      InstanceIds: [instanceId],
      Parameters: { commands },
    }),
  );
  const CommandId = sent.Command?.CommandId ?? '';
  for (;;) {
    await world.sandbox.clock.sleep(1_000);
    const invocation = await ssm
      .send(new GetCommandInvocationCommand({ CommandId, InstanceId: instanceId }))
      .catch(() => undefined);
    if (invocation && !['Pending', 'InProgress', 'Delayed'].includes(invocation.Status ?? '')) {
      return {
        code: invocation.ResponseCode,
        stdout: invocation.StandardOutputContent ?? '',
        stderr: invocation.StandardErrorContent ?? '',
      };
    }
  }
};

const ACCOUNTS = 'etc/letsencrypt/accounts/acme-v02.api.letsencrypt.org/directory';

/** Replays a presigned URL against the sandbox's S3 endpoint, as a box's curl would send it. */
const replay = (
  endpoint: string,
  presigned: string,
  method: string,
): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const url = new URL(presigned);
    const target = new URL(endpoint);
    const req = http.request(
      {
        host: target.hostname,
        port: target.port,
        method,
        path: `${url.pathname}${url.search}`,
        headers: { Host: url.host, 'Content-Type': 'application/gzip' },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(method === 'PUT' ? 'replayed' : undefined);
  });

const presignedUrls = (world: World): string[] =>
  world.sandbox.calls
    .filter((c) => c.action === 'SendCommand')
    .flatMap(
      (c) => JSON.stringify(c.input).match(/https:\/\/[^'"\\\s]+X-Amz-Signature=[0-9a-f]+[^'"\\\s]*/g) ?? [],
    );

describe('a replacement of an HTTPS site in restore mode', () => {
  let world: World | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it("moves the old box's certificate and ACME account to the new box before the switch: same serial, no order, no failed request, renewable there", async () => {
    // The app check must see the app's own body: over plain HTTP, certbot's redirect would answer.
    world = await startWorld({
      target: (t) => ({ ...t, tls: { mode: 'restore' }, health: { ...t.health, bodyContains: 'ok i-' } }),
    });
    const { sandbox, seeded, target } = world;
    const before = (await sandbox.servedCertificate(seeded.publicIp, target.domain)) as ServedCertificate;

    const { run, downtime } = await runMeasured(world);

    expect(run.outcome).toBe('replaced');
    const newInstanceId = sandbox.eipInstance(seeded.allocationId) ?? '';
    expect(newInstanceId).not.toBe(seeded.oldInstanceId);
    const after = await sandbox.servedCertificate(seeded.publicIp, target.domain);
    expect(before.serialNumber).toMatch(/^[0-9A-F]+$/);
    expect(after?.serialNumber).toBe(before.serialNumber);
    expect(after?.fingerprint256).toBe(before.fingerprint256);
    // The lineage arrived whole: certbot can renew it on the new box.
    const le = join(sandbox.instanceDir(newInstanceId), 'etc/letsencrypt');
    expect(readFileSync(join(le, 'renewal', `${target.domain}.conf`), 'utf8')).toContain('[renewalparams]');
    expect(existsSync(join(le, 'archive', target.domain, 'privkey1.pem'))).toBe(true);
    const oldAccounts = readdirSync(join(sandbox.instanceDir(seeded.oldInstanceId), ACCOUNTS));
    expect(readdirSync(join(sandbox.instanceDir(newInstanceId), ACCOUNTS))).toEqual(oldAccounts);
    // Nothing was asked of the CA, on either box.
    expect(certbotLog(world, newInstanceId)).toContain(`install: ${target.domain} into nginx`);
    expect(certbotLog(world, newInstanceId)).not.toContain('order:');
    expect(certbotLog(world, seeded.oldInstanceId)).not.toContain('order:');
    expect(downtime).toEqual({ failedProbes: 0, downtimeMs: 0 });
    expect(world.mutatingCalls((c) => c.action === 'AssociateAddress')).toHaveLength(1);
    // certbot's own renewal (as its timer runs it) works on the new box with what arrived.
    const dryRun = await runOnBox(world, newInstanceId, ['certbot renew --dry-run']);
    expect(dryRun).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('Congratulations, all simulated renewals succeeded'),
    });
  });

  it('leaves no transfer object behind, and its presigned URLs are dead once expired', async () => {
    world = await startWorld({ target: (t) => ({ ...t, tls: { mode: 'restore' } }) });
    const { sandbox } = world;

    const run = await world.run();

    expect(run.outcome).toBe('replaced');
    const viaUrl = sandbox.calls.filter((c) => c.via === 'presigned-url');
    expect(viaUrl.map((c) => [c.action, c.error])).toEqual([
      ['PutObject', undefined],
      ['GetObject', undefined],
    ]);
    const key = (viaUrl[0]?.input as { Key?: string } | undefined)?.Key ?? '';
    expect(key).toMatch(/^tls\//);
    expect(sandbox.objectKeys('understudy-sandbox-runs').filter((k) => k.startsWith('tls/'))).toEqual([]);

    const urls = presignedUrls(world);
    expect(urls).toHaveLength(2);
    await sandbox.clock.sleep(301_000);
    const [put, get] = await Promise.all([
      replay(sandbox.s3Endpoint, urls[0] ?? '', 'PUT'),
      replay(sandbox.s3Endpoint, urls[1] ?? '', 'GET'),
    ]);
    for (const answer of [put, get]) {
      expect(answer.status).toBe(403);
      expect(answer.body).toContain('<Message>Request has expired</Message>');
    }
    expect(sandbox.objectKeys('understudy-sandbox-runs').filter((k) => k.startsWith('tls/'))).toEqual([]);
  });
});

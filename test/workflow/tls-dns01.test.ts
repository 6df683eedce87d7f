import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TargetConfig } from '../../lambdas/shared/config';
import { runMeasured, startWorld, type World } from './helpers';

// The app check must see the app's own body: over plain HTTP, certbot's redirect would answer.
const dns01 = (t: TargetConfig): TargetConfig => ({
  ...t,
  tls: { mode: 'dns-01', email: 'ops@example.test', hostedZoneId: 'Z0123456789ABCDEFGHIJ' },
  health: { ...t.health, bodyContains: 'ok i-' },
});

const certbotLog = (world: World, instanceId: string): string => {
  const path = join(world.sandbox.instanceDir(instanceId), 'var/log/letsencrypt/letsencrypt.log');
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
};

describe('a replacement of an HTTPS site in dns-01 mode', () => {
  let world: World | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it('issues the certificate on the new box before the switch when the instance role may answer in Route 53, and the app answers over HTTPS there', async () => {
    world = await startWorld({ target: dns01 });
    const { sandbox, seeded, target } = world;
    sandbox.allowDns01('web');
    const before = await sandbox.servedCertificate(seeded.publicIp, target.domain);

    const { run, downtime } = await runMeasured(world);

    expect(run.outcome).toBe('replaced');
    const newInstanceId = sandbox.eipInstance(seeded.allocationId) ?? '';
    expect(newInstanceId).not.toBe(seeded.oldInstanceId);
    const log = certbotLog(world, newInstanceId);
    expect(log).toContain(`order: ${target.domain} (authenticator: dns-route53)`);
    expect(log).toContain(`issued: ${target.domain}`);
    // Issued by the command sent before the Elastic IP moved, and the address moved once.
    const moves = world.mutatingCalls((c) => c.action === 'AssociateAddress');
    expect(moves).toHaveLength(1);
    const certbot = world
      .mutatingCalls((c) => c.action === 'SendCommand')
      .find((c) => JSON.stringify(c.input).includes('dns-route53'));
    expect(certbot?.at).toBeLessThan(moves[0]?.at ?? 0);
    const after = await sandbox.servedCertificate(seeded.publicIp, target.domain);
    expect(after?.serialNumber).not.toBe(before?.serialNumber);
    expect(log).toContain(after?.serialNumber);
    expect(downtime).toEqual({ failedProbes: 0, downtimeMs: 0 });
  });

  it('rolls back before the switch when the instance role may not, and the address never moves', async () => {
    world = await startWorld({ target: dns01 });
    const { sandbox, seeded } = world;

    const run = await world.run();

    expect(run.outcome).toBe('rolled-back');
    expect(run.timeline.map((e) => e.state)).not.toContain('Switch');
    expect(world.mutatingCalls((c) => c.action === 'AssociateAddress')).toEqual([]);
    expect(sandbox.eipInstance(seeded.allocationId)).toBe(seeded.oldInstanceId);
    const candidate = (run.outputs.Launch as { launch?: { instanceId?: string } }).launch?.instanceId ?? '';
    expect(certbotLog(world, candidate)).toContain('order failed: route53:ListHostedZones AccessDenied');
  });
});

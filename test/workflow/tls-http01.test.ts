import { httpGet } from '../../lambdas/shared/http';
import { startWorld, type World } from './helpers';

describe('a replacement of an HTTPS site in http-01 mode', () => {
  let world: World | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it('runs certbot on the new box after the switch, then serves HTTPS from it through the EIP', async () => {
    world = await startWorld({
      target: (t) => ({ ...t, tls: { mode: 'http-01', email: 'ops@example.test' } }),
    });
    const run = await world.run();

    expect(run.outcome).toBe('replaced');
    const states = run.timeline.map((e) => e.state);
    expect(states.indexOf('Certificate')).toBeGreaterThan(states.indexOf('Switch'));
    const certbot = world.sandbox.calls.find(
      (c) => c.action === 'SendCommand' && JSON.stringify(c.input).includes('certbot'),
    );
    expect(JSON.stringify(certbot?.input)).toContain(world.target.domain);
    const served = await httpGet({
      address: world.seeded.publicIp,
      scheme: 'https',
      domain: world.target.domain,
      path: world.target.health.path,
      timeoutMs: 5_000,
    });
    expect(served.ok).toBe(true);
    expect(served.status).toBe(200);
    expect(served.certificateDaysLeft).toBeGreaterThan(world.target.health.certificateMinDaysLeft);
    expect(served.body).toContain(world.sandbox.eipInstance(world.seeded.allocationId));
  });
});

import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { addTrustedCa, httpGet, type ProbeRequest } from '../../../lambdas/shared/http';
import { installClock, type SandboxClock } from '../../../sandbox/clock';
import type { AddressProxyHandle, InstanceServerHandle, SandboxCaFiles } from '../../../sandbox/contracts';
import { routeAddress, startAddressProxy, startInstanceServer } from '../../../sandbox/net';
import { createCa } from '../../../sandbox/tls';

const PUBLIC_IP = '203.0.113.10';
const DOMAIN = 'shop.example.com';

const probe = (overrides: Partial<ProbeRequest> = {}) =>
  httpGet({
    address: PUBLIC_IP,
    scheme: 'http',
    domain: DOMAIN,
    path: '/health',
    timeoutMs: 2_000,
    ...overrides,
  });

describe('instance servers behind the Elastic IP proxy', () => {
  let dir: string;
  let ca: SandboxCaFiles;
  let clock: SandboxClock;
  let a: InstanceServerHandle;
  let b: InstanceServerHandle;
  let proxy: AddressProxyHandle;
  let unroute: () => void;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'understudy-net-'));
    ca = await createCa(dir);
    addTrustedCa(ca.certPem);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    clock = installClock();
    a = await startInstanceServer(clock, (request) => ({
      status: 200,
      body: `A ${request.path} tls=${request.tls}`,
    }));
    b = await startInstanceServer(clock, (request) => ({ status: 200, body: `B host=${request.host}` }));
    proxy = await startAddressProxy(clock, PUBLIC_IP);
    unroute = routeAddress(clock, proxy);
  });
  afterEach(async () => {
    unroute();
    await Promise.all([proxy.close(), a.close(), b.close()]);
    clock.uninstall();
  });

  it('sends requests for the public address to the box it points at, and new ones to the next box after a move', async () => {
    proxy.pointAt(a);
    expect(await probe()).toMatchObject({ ok: true, status: 200, body: 'A /health tls=false' });
    proxy.pointAt(b);
    expect(await probe()).toMatchObject({ ok: true, status: 200, body: `B host=${DOMAIN}` });
  });

  it('fails the request when the address is associated with nothing', async () => {
    const response = await probe();
    expect(response.ok).toBe(false);
    expect(response.error).toEqual(expect.any(String));
  });

  it('fails the request when the box has no app listening', async () => {
    a.setResponder(undefined);
    proxy.pointAt(a);
    expect((await probe()).ok).toBe(false);
    a.setResponder(() => ({ status: 503, body: 'starting' }));
    expect(await probe()).toMatchObject({ ok: true, status: 503, body: 'starting' });
  });

  it('serves a certificate issued by the sandbox CA that the probe validates for its domain', async () => {
    const leaf = await ca.issue(DOMAIN, 90);
    a.installCertificate(DOMAIN, leaf.certPem, leaf.keyPem);
    proxy.pointAt(a);
    const response = await probe({ scheme: 'https' });
    expect(response).toMatchObject({ ok: true, status: 200, body: 'A /health tls=true' });
    // Days left are measured on the virtual clock, which starts at real now here.
    expect(response.certificateDaysLeft).toBeGreaterThan(89);
    expect(response.certificateDaysLeft).toBeLessThan(90.01);
  });

  it('refuses a certificate issued for another domain', async () => {
    const leaf = await ca.issue('other.example.com');
    a.installCertificate(DOMAIN, leaf.certPem, leaf.keyPem);
    proxy.pointAt(a);
    const response = await probe({ scheme: 'https' });
    expect(response.ok).toBe(false);
    expect(response.error).toMatch(/altnames|does not match/i);
  });

  it('lets virtual time move on after each HTTPS request through the address', async () => {
    const leaf = await ca.issue(DOMAIN);
    a.installCertificate(DOMAIN, leaf.certPem, leaf.keyPem);
    proxy.pointAt(a);
    for (let i = 0; i < 5; i++) {
      expect((await probe({ scheme: 'https' })).ok).toBe(true);
      // A proxied connection left half-open would hold the clock and this sleep would never end.
      await clock.sleep(50);
    }
    expect(clock.elapsed()).toBe(250);
  }, 10_000);

  it('fails the TLS handshake for a domain the box has no certificate for', async () => {
    const leaf = await ca.issue(DOMAIN);
    a.installCertificate(DOMAIN, leaf.certPem, leaf.keyPem);
    proxy.pointAt(a);
    expect((await probe({ scheme: 'https', domain: 'unknown.example.com' })).ok).toBe(false);
  });

  it('keeps virtual time still while a request is answered and lets it run between requests', async () => {
    proxy.pointAt(a);
    const seenAt: number[] = [];
    a.setResponder(() => {
      seenAt.push(clock.elapsed());
      return { status: 200, body: 'ok' };
    });
    const start = clock.elapsed();
    // A competing timer due "during" the request must wait until the request is over.
    let timerAt = -1;
    setTimeout(() => {
      timerAt = clock.elapsed();
    }, 1);
    const first = await probe();
    expect(first.ok).toBe(true);
    expect(seenAt).toEqual([start]);
    await clock.sleep(60_000);
    expect(timerAt).toBe(start + 1);
    expect((await probe()).ok).toBe(true);
    expect(seenAt).toEqual([start, start + 60_000]);
  });

  it('holds the clock from the moment a client creates its socket to the address until it closes', async () => {
    proxy.pointAt(a);

    const answered = probe();
    const heldAtConnect = clock.inFlight();
    expect((await answered).ok).toBe(true);
    await clock.sleep(1);

    expect(heldAtConnect).toEqual([`client of ${PUBLIC_IP}`]);
    expect(clock.inFlight()).toEqual([]);
  });

  it('answers a client polling every 50 virtual ms across a move of the address', async () => {
    proxy.pointAt(a);
    const bodies: string[] = [];
    for (let i = 0; i < 40; i++) {
      if (i === 20) proxy.pointAt(b);
      const response = await probe();
      bodies.push(response.body?.slice(0, 1) ?? 'x');
      await clock.sleep(50);
    }
    expect(bodies.join('')).toBe(`${'A'.repeat(20)}${'B'.repeat(20)}`);
    expect(clock.elapsed()).toBe(40 * 50);
  });
});

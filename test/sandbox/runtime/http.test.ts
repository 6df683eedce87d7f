import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { addConnectHook, addTrustedCa, httpGet, removeConnectHook } from '../../../lambdas/shared/http';
import { createCa } from '../../../sandbox/tls';

const DOMAIN = 'closing.example.com';
const ADDRESS = '203.0.113.77';

describe('httpGet', () => {
  let dir: string;
  let server: tls.Server;
  let unroute: () => void;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'understudy-http-'));
    const ca = await createCa(dir);
    addTrustedCa(ca.certPem);
    const leaf = await ca.issue(DOMAIN, 30);
    // A server that answers without a length and closes at once: the body ends with the connection.
    server = tls.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok'));
      socket.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const hook = (host: string) => (host === ADDRESS ? { host: '127.0.0.1', port } : undefined);
    addConnectHook(hook);
    unroute = () => removeConnectHook(hook);
  });
  afterAll(async () => {
    unroute();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it('measures the certificate even when the server closes the connection with the body', async () => {
    const response = await httpGet({
      address: ADDRESS,
      scheme: 'https',
      domain: DOMAIN,
      path: '/',
      timeoutMs: 5_000,
    });

    expect(response).toMatchObject({ ok: true, status: 200, body: 'ok' });
    expect(response.certificateDaysLeft).toBeGreaterThan(29);
    expect(response.certificateDaysLeft).toBeLessThan(30.01);
  });
});

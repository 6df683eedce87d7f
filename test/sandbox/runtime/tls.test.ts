import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { SandboxCaFiles } from '../../../sandbox/contracts';
import { createCa } from '../../../sandbox/tls';

const DAY_MS = 86_400_000;

describe('sandbox certificate authority', () => {
  let dir: string;
  let ca: SandboxCaFiles;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'understudy-tls-'));
    ca = await createCa(dir);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('is a CA valid a year either side of now', () => {
    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(Math.abs(Date.parse(cert.validFrom) - (Date.now() - 365 * DAY_MS))).toBeLessThan(DAY_MS);
    expect(Math.abs(Date.parse(cert.validTo) - (Date.now() + 365 * DAY_MS))).toBeLessThan(DAY_MS);
  });

  it('issues leaves for the domain only, from a day ago for the days asked', async () => {
    const leaf = await ca.issue('app.example.org', 30);
    const cert = new X509Certificate(leaf.certPem);
    expect(cert.ca).toBe(false);
    expect(cert.subjectAltName).toBe('DNS:app.example.org');
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(Math.abs(Date.parse(cert.validFrom) - (Date.now() - DAY_MS))).toBeLessThan(60_000);
    expect(Math.abs(Date.parse(cert.validTo) - (Date.now() + 30 * DAY_MS))).toBeLessThan(60_000);
  });

  it('issues the same domain many times, concurrently, with distinct keys and serials', async () => {
    const leaves = await Promise.all([1, 2, 3].map(() => ca.issue('same.example.org')));
    const certs = leaves.map((leaf) => new X509Certificate(leaf.certPem));
    expect(new Set(certs.map((cert) => cert.serialNumber)).size).toBe(3);
    expect(new Set(leaves.map((leaf) => leaf.keyPem)).size).toBe(3);
  });

  it('refuses a name that is not a domain', async () => {
    await expect(ca.issue('bad name/../x')).rejects.toThrow(/not a domain/);
  });
});

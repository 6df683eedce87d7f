import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { TLSSocket } from 'node:tls';
import tls from 'node:tls';

/**
 * One HTTP(S) request against the service as a client on the internet sees it: to the Elastic IP, with
 * the domain as Host header and TLS SNI, checking status, body and the served certificate.
 *
 * Connection hooks live on `globalThis` (like client plugins) so a simulated account can route the
 * EIP's address to a local proxy, and see each socket it routed from the moment it is made; in AWS no
 * hook is registered and sockets go where they say. Trust anchors can be added the same way (a private
 * CA for a test account), on top of Node's defaults.
 */

export interface ConnectRoute {
  readonly host: string;
  readonly port: number;
  /** Called with the socket as soon as it is created (before it connects). */
  readonly onSocket?: (socket: net.Socket) => void;
}
export type ConnectHook = (host: string, port: number) => ConnectRoute | undefined;
const HOOKS = Symbol.for('understudy.net-connect-hooks');
const TRUST = Symbol.for('understudy.tls-extra-ca');
type Host = { [HOOKS]?: ConnectHook[]; [TRUST]?: string[] };

export const addConnectHook = (hook: ConnectHook): void => {
  const host = globalThis as Host;
  host[HOOKS] ??= [];
  if (!host[HOOKS].includes(hook)) host[HOOKS].push(hook);
};
export const removeConnectHook = (hook: ConnectHook): void => {
  const host = globalThis as Host;
  host[HOOKS] = (host[HOOKS] ?? []).filter((h) => h !== hook);
};
export const addTrustedCa = (pem: string): void => {
  const host = globalThis as Host;
  host[TRUST] ??= [];
  if (!host[TRUST].includes(pem)) host[TRUST].push(pem);
};

const route = (host: string, port: number): ConnectRoute => {
  for (const hook of (globalThis as Host)[HOOKS] ?? []) {
    const target = hook(host, port);
    if (target) return target;
  }
  return { host, port };
};

export interface ProbeRequest {
  /** Address to connect to (the EIP's public IP). */
  readonly address: string;
  readonly scheme: 'http' | 'https';
  /** Sent as Host header and TLS SNI; the certificate must be valid for it. */
  readonly domain: string;
  readonly path: string;
  readonly timeoutMs: number;
}

export interface ProbeResponse {
  readonly ok: boolean;
  readonly status?: number;
  readonly body?: string;
  /** Days until the served certificate expires (https only). */
  readonly certificateDaysLeft?: number;
  readonly error?: string;
}

const MAX_BODY = 64 * 1024;

// Building a context from ~150 root PEMs costs milliseconds; a client polling every 50 ms reuses one.
let trustCache: { pems: readonly string[]; context: tls.SecureContext } | undefined;
const trustContext = (extraCa: readonly string[]): tls.SecureContext => {
  if (trustCache?.pems.length !== extraCa.length || trustCache.pems.some((pem, i) => pem !== extraCa[i])) {
    trustCache = {
      pems: [...extraCa],
      context: tls.createSecureContext({ ca: [...tls.rootCertificates, ...extraCa] }),
    };
  }
  return trustCache.context;
};

/** Sends one GET; never throws: transport failures come back as `{ ok: false, error }`. */
export const httpGet = (request: ProbeRequest): Promise<ProbeResponse> =>
  new Promise((resolve) => {
    const port = request.scheme === 'https' ? 443 : 80;
    const target = route(request.address, port);
    const extraCa = (globalThis as Host)[TRUST] ?? [];
    let settled = false;
    const done = (response: ProbeResponse) => {
      if (settled) return;
      settled = true;
      resolve(response);
    };
    const options: https.RequestOptions = {
      method: 'GET',
      path: request.path,
      headers: { Host: request.domain, 'User-Agent': 'understudy-probe', Connection: 'close' },
      // No `agent`: with `agent: false` Node builds a fresh Agent and ignores createConnection (the request
      // would go to localhost:80); without one, createConnection makes the socket and nothing is pooled.
      timeout: request.timeoutMs,
      createConnection: () => {
        const socket =
          request.scheme === 'https'
            ? tls.connect({
                host: target.host,
                port: target.port,
                servername: request.domain,
                ...(extraCa.length > 0 ? { secureContext: trustContext(extraCa) } : {}),
              })
            : net.connect({ host: target.host, port: target.port });
        target.onSocket?.(socket);
        return socket;
      },
    };
    const req = (request.scheme === 'https' ? https : http).request(options, (res) => {
      // Read now: by the end of the body the server may have closed the socket, and a closed TLS socket
      // has no peer certificate any more (the expiry check would be skipped without a word).
      const cert = request.scheme === 'https' ? (res.socket as TLSSocket).getPeerCertificate?.() : undefined;
      const certificateDaysLeft =
        cert?.valid_to !== undefined ? (Date.parse(cert.valid_to) - Date.now()) / 86_400_000 : undefined;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < MAX_BODY) body += chunk;
      });
      res.on('end', () => {
        done({
          ok: true,
          ...(res.statusCode !== undefined ? { status: res.statusCode } : {}),
          body,
          ...(certificateDaysLeft !== undefined ? { certificateDaysLeft } : {}),
        });
      });
      res.on('error', (error) => done({ ok: false, error: error.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${request.timeoutMs} ms`)));
    req.on('error', (error) => done({ ok: false, error: error.message }));
    req.end();
  });

import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { addConnectHook, type ConnectHook, removeConnectHook } from '../lambdas/shared/http';
import type {
  AddressProxyHandle,
  AppRequest,
  AppResponder,
  AppResponse,
  InstanceServerHandle,
  VirtualClock,
} from './contracts';

/**
 * Real sockets for simulated boxes and the Elastic IP, on loopback. Each accepted connection holds the
 * virtual clock until it closes, so a request's round trip happens at one virtual instant, and a flip of
 * the EIP cannot "happen during" a request that is already being answered.
 */

const LOOPBACK = '127.0.0.1';

const listen = (server: net.Server): Promise<number> =>
  new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => {
      server.off('error', reject);
      const address = server.address();
      if (address === null || typeof address === 'string') reject(new Error('no TCP address'));
      else resolve(address.port);
    });
  });

const closeServer = (server: net.Server, sockets: Set<net.Socket>): Promise<void> =>
  new Promise((resolve) => {
    for (const socket of sockets) socket.destroy();
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
  });

/** Holds the clock from accept to close and remembers the socket so `close()` can end it. */
const holdWhileOpen = (
  clock: VirtualClock,
  sockets: Set<net.Socket>,
  socket: net.Socket,
  label: string,
): void => {
  const release = clock.hold(label);
  sockets.add(socket);
  socket.once('close', () => {
    sockets.delete(socket);
    release();
  });
  // A reset from the peer is an ordinary outcome here, not a crash.
  socket.on('error', () => socket.destroy());
};

export async function startInstanceServer(
  clock: VirtualClock,
  responder?: AppResponder,
  options: {
    /** Called at each TLS handshake before the certificate is chosen (a pending nginx reload applies). */
    readonly beforeHandshake?: () => void;
  } = {},
): Promise<InstanceServerHandle> {
  let current = responder;
  const contexts = new Map<string, tls.SecureContext>();
  const sockets = new Set<net.Socket>();

  const answer = (tlsOn: boolean) => (req: http.IncomingMessage, res: http.ServerResponse) => {
    const respond = current;
    if (!respond) {
      // The app stopped between accept and request: like a process that died mid-connection.
      req.socket.destroy();
      return;
    }
    const request: AppRequest = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      host: req.headers.host,
      tls: tlsOn,
    };
    let response: AppResponse;
    try {
      response = respond(request);
    } catch (error) {
      response = {
        status: 500,
        body: `responder failed: ${error instanceof Error ? error.message : String(error)}`,
      };
    }
    req.resume();
    res.writeHead(response.status, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(response.body),
      Connection: 'close',
    });
    res.end(response.body);
  };

  const accept = (label: string) => (socket: net.Socket) => {
    holdWhileOpen(clock, sockets, socket, label);
    // Nothing listening on the box: the connection dies at once.
    if (!current) socket.destroy();
  };

  // Real-time limits only matter for a peer that connects and then says nothing.
  const limits = { connectionsCheckingInterval: 1_000, headersTimeout: 5_000, requestTimeout: 5_000 };
  const plain = http.createServer(limits, answer(false));
  plain.on('connection', accept('instance http connection'));
  const secure = https.createServer(
    {
      ...limits,
      SNICallback: (servername, callback) => {
        options.beforeHandshake?.();
        const context = contexts.get(servername.toLowerCase());
        if (context) callback(null, context);
        else callback(new Error(`no certificate for ${servername}`));
      },
    },
    answer(true),
  );
  secure.on('connection', accept('instance https connection'));
  // Failed handshakes (unknown SNI name, untrusting client) are expected; the socket is already gone.
  secure.on('tlsClientError', () => undefined);

  const httpPort = await listen(plain);
  const httpsPort = await listen(secure);

  return {
    httpPort,
    httpsPort,
    setResponder: (next) => {
      current = next;
    },
    installCertificate: (domain, certPem, keyPem) => {
      contexts.set(domain.toLowerCase(), tls.createSecureContext({ cert: certPem, key: keyPem }));
    },
    close: async () => {
      current = undefined;
      await Promise.all([closeServer(plain, sockets), closeServer(secure, sockets)]);
    },
  };
}

export async function startAddressProxy(clock: VirtualClock, publicIp: string): Promise<AddressProxyHandle> {
  let backend: InstanceServerHandle | undefined;
  const sockets = new Set<net.Socket>();

  const forward = (secure: boolean) => (client: net.Socket) => {
    holdWhileOpen(clock, sockets, client, `eip ${publicIp}:${secure ? 443 : 80}`);
    // The backend is chosen at accept: moving the address affects new connections only.
    const target = backend;
    if (!target) {
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: LOOPBACK, port: secure ? target.httpsPort : target.httpPort });
    holdWhileOpen(clock, sockets, upstream, `eip ${publicIp} upstream`);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    // End rather than destroy on close: bytes already piped must still reach the other side. Resume so
    // what the peer still sends (a TLS close_notify) is drained, or the socket never reaches 'end'.
    upstream.once('close', () => client.end().resume());
    client.once('close', () => upstream.end().resume());
    client.pipe(upstream);
    upstream.pipe(client);
  };

  const plain = net.createServer(forward(false));
  const secure = net.createServer(forward(true));
  const httpPort = await listen(plain);
  const httpsPort = await listen(secure);

  return {
    publicIp,
    httpPort,
    httpsPort,
    pointAt: (server) => {
      backend = server;
    },
    close: async () => {
      backend = undefined;
      await Promise.all([closeServer(plain, sockets), closeServer(secure, sockets)]);
    },
  };
}

/**
 * Sends connections to the address's ports 80 and 443 to the proxy; returns the undo. Each such client
 * socket holds the clock from its creation until it closes, so no virtual time passes between a
 * client's connect and the proxy's accept (where the proxy's own hold begins).
 */
export function routeAddress(clock: VirtualClock, proxy: AddressProxyHandle): () => void {
  const holdClient = (socket: net.Socket): void => {
    const release = clock.hold(`client of ${proxy.publicIp}`);
    socket.once('close', release);
  };
  const hook: ConnectHook = (host, port) => {
    if (host !== proxy.publicIp) return undefined;
    if (port === 80) return { host: LOOPBACK, port: proxy.httpPort, onSocket: holdClient };
    if (port === 443) return { host: LOOPBACK, port: proxy.httpsPort, onSocket: holdClient };
    return undefined;
  };
  addConnectHook(hook);
  return () => removeConnectHook(hook);
}

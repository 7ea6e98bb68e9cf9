/**
 * A stand-in for a remote Temporal service that demands TLS with a client
 * certificate and an API key: an HTTP/2 server (mutual TLS) that checks each
 * gRPC call's `authorization: Bearer <key>` and forwards accepted calls to the
 * plaintext dev server. `temporal server start-dev` (v1.5.1) has no TLS
 * options, so this is how the tests reach a service over TLS.
 */
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { TestCerts } from './certs.js';

export interface TlsProxy {
  address: string;
  /** User agents of accepted calls (the worker's Core client and the tool's grpc-js say who they are). */
  accepted: Map<string, number>;
  /** Calls refused for a missing or wrong API key. */
  refused: number;
  stop(): Promise<void>;
}

export async function startTlsProxy(opts: { upstream: string; certs: TestCerts; apiKey: string }): Promise<TlsProxy> {
  const upstream = http2.connect(`http://${opts.upstream}`);
  upstream.on('error', () => undefined);
  const accepted = new Map<string, number>();
  const proxy: TlsProxy = { address: '', accepted, refused: 0, stop: async () => undefined };
  const server = http2.createSecureServer({
    key: readFileSync(opts.certs.serverKey),
    cert: readFileSync(opts.certs.serverCert),
    ca: readFileSync(opts.certs.caCert),
    requestCert: true,
    rejectUnauthorized: true,
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    if (headers.authorization !== `Bearer ${opts.apiKey}`) {
      proxy.refused += 1;
      // A trailers-only gRPC answer: UNAUTHENTICATED.
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '16', 'grpc-message': 'missing or wrong API key' },
        { endStream: true },
      );
      return;
    }
    const agent = String(headers['user-agent'] ?? '');
    accepted.set(agent, (accepted.get(agent) ?? 0) + 1);
    const forward: http2.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':') || k === ':path' || k === ':method') forward[k] = v;
    const call = upstream.request(forward);
    call.on('error', () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
    let trailers: http2.IncomingHttpHeaders = {};
    call.on('trailers', (t) => (trailers = t));
    call.on('response', (h) => {
      const { ':status': status, ...rest } = h;
      if ('grpc-status' in rest) {
        stream.respond({ ':status': status, ...rest }, { endStream: true });
        call.resume();
        return;
      }
      stream.respond({ ':status': status, ...rest }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers(stripPseudo(trailers)));
      call.pipe(stream);
    });
    stream.pipe(call);
    // A cancelled call (a long poll the worker gives up, say) ends upstream too.
    stream.on('close', () => {
      if (!call.closed) call.close(http2.constants.NGHTTP2_CANCEL);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.stop = async () => {
    upstream.destroy();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Drop open sessions (long polls) rather than wait for them.
      for (const s of sessions) s.destroy();
    });
  };
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  return proxy;
}

function stripPseudo(h: http2.IncomingHttpHeaders): http2.OutgoingHttpHeaders {
  return Object.fromEntries(Object.entries(h).filter(([k]) => !k.startsWith(':')));
}

// The checks every request passes before a route sees it, against the attacks that hit other
// generation servers: a web page on another site queueing work through the user's browser
// (cross-site requests, including the `Origin: null` of sandboxed frames and file: pages), DNS
// rebinding (a foreign name resolving to 127.0.0.1: its requests carry that name in `Host`), and
// unauthenticated use of a server bound beyond loopback (the bearer key).
import { createHash, timingSafeEqual } from 'node:crypto';
import { networkInterfaces, hostname } from 'node:os';
import { ApiFailure } from './errors.js';

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];
const WILDCARD_ADDRESSES = new Set(['0.0.0.0', '::', '']);

export interface SecurityOptions {
  host: string;
  apiKey?: string;
  insecure?: boolean;
  /** Extra names the `Host` header may carry (a reverse proxy's, a LAN name). */
  allowedHosts?: readonly string[];
}

export function isLoopback(host: string): boolean {
  return LOOPBACK_NAMES.includes(host.toLowerCase()) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Refuses to expose an unauthenticated server beyond this machine unless told to. */
export function checkBinding(options: SecurityOptions): void {
  if (isLoopback(options.host) || options.apiKey || options.insecure) return;
  throw new Error(`refusing to bind ${options.host} without --api-key: anyone who can reach it could run generations; give --api-key KEY, or --insecure to allow it anyway`);
}

/** The names a `Host` header may carry: loopback, the bound address, this machine's addresses when bound to all, and the extras. */
export function allowedHostNames(options: SecurityOptions): Set<string> {
  const names = new Set([...LOOPBACK_NAMES, options.host, ...(options.allowedHosts ?? [])].map((name) => name.toLowerCase()));
  if (WILDCARD_ADDRESSES.has(options.host)) {
    names.add(hostname().toLowerCase());
    for (const addresses of Object.values(networkInterfaces())) for (const address of addresses ?? []) names.add(address.address.toLowerCase());
  }
  return names;
}

/** The host name of a `Host` header without its port: `[::1]:7860` → `::1`, `Example.com:80` → `example.com`. */
export function hostOf(header: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(header);
  if (bracketed) return bracketed[1]!.toLowerCase();
  return header.replace(/:\d+$/, '').toLowerCase();
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface RequestFacts {
  method: string;
  url: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

function header(facts: RequestFacts, name: string): string | undefined {
  const value = facts.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Equal-time comparison of two secrets of any length (both hashed first). */
function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** Throws the ApiFailure a request must be refused with, if any. */
export function checkRequest(facts: RequestFacts, options: SecurityOptions, hosts: ReadonlySet<string>): void {
  const host = header(facts, 'host');
  if (!host || !hosts.has(hostOf(host))) {
    throw new ApiFailure(403, 'forbidden_host', `the Host header ${JSON.stringify(host ?? '')} is not one of this server's names (start it with --allowed-host to add one)`);
  }
  if (!SAFE_METHODS.has(facts.method)) {
    const origin = header(facts, 'origin');
    if (origin !== undefined) {
      let sameOrigin = false;
      try {
        const url = new URL(origin);
        sameOrigin = (url.protocol === 'http:' || url.protocol === 'https:') && url.host.toLowerCase() === host.toLowerCase();
      } catch {
        // "null" and other opaque origins are never this server.
      }
      if (!sameOrigin) throw new ApiFailure(403, 'cross_origin', `requests from another origin (${origin}) may not change anything on this server`);
    }
    const site = header(facts, 'sec-fetch-site');
    if (site !== undefined && site !== 'same-origin' && site !== 'none') {
      throw new ApiFailure(403, 'cross_origin', `a ${site} request may not change anything on this server`);
    }
  }
  const path = facts.url.split('?')[0]!;
  if (options.apiKey && (path.startsWith('/v1/') || path === '/metrics')) {
    const authorization = header(facts, 'authorization') ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(authorization);
    if (!match || !sameSecret(match[1]!.trim(), options.apiKey)) {
      throw new ApiFailure(401, 'unauthorized', 'this server needs an API key: send Authorization: Bearer KEY');
    }
  }
}

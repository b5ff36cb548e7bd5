// Shared by the server tests: a server on a free loopback port over the tiny random pipeline,
// requests with any headers (fetch refuses to set Host), event streams, and test images.
import { request as httpRequest } from 'node:http';
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { type RunningServer, type ServeOptions, startServer } from '../../src/server/server.js';
import { scratch, tinyPipeline } from '../pipeline/tiny.js';

export async function tinyServer(options: Partial<ServeOptions> = {}): Promise<RunningServer & { data: string }> {
  const data = options.data ?? (await mkdtemp(join(scratch, 'serve-')));
  const server = await startServer({ model: await tinyPipeline(), port: 0, threads: 1, warn: () => {}, ...options, data });
  return Object.assign(server, { data });
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json: () => unknown;
}

/** One HTTP request with exactly these headers (Host included). */
export function rawRequest(url: string, options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body, json: () => JSON.parse(body.toString('utf8')) as unknown });
      });
    });
    request.on('error', reject);
    request.end(options.body);
  });
}

export async function postJson(server: RunningServer, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${server.url}/v1/generations`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

export interface ServerEvent {
  event: string;
  data: Record<string, unknown>;
}

/** Reads a job's event stream; `onEvent` may act on each (e.g. cancel at the first step). Resolves at the stream's end. */
export async function readEvents(server: RunningServer, id: string, onEvent: (event: ServerEvent) => void | Promise<void> = () => {}, headers: Record<string, string> = {}): Promise<ServerEvent[]> {
  const response = await fetch(`${server.url}/v1/generations/${id}/events`, { headers });
  if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
  const events: ServerEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of response.body) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const name = /^event: (.+)$/m.exec(block)?.[1];
      const data = /^data: (.+)$/m.exec(block)?.[1];
      if (!name || data === undefined) continue;
      const event = { event: name, data: JSON.parse(data) as Record<string, unknown> };
      events.push(event);
      await onEvent(event);
    }
  }
  return events;
}

/** A PNG of one colour as bytes and as a data URL. */
export async function colourPng(colour: string, size = 32): Promise<{ bytes: Buffer; dataUrl: string }> {
  const bytes = await sharp({ create: { width: size, height: size, channels: 3, background: colour } }).png().toBuffer();
  return { bytes, dataUrl: `data:image/png;base64,${bytes.toString('base64')}` };
}

/** Polls a job until it leaves queued/running. */
export async function waitFinished(server: RunningServer, id: string, headers: Record<string, string> = {}): Promise<Record<string, unknown>> {
  for (;;) {
    const status = (await (await fetch(`${server.url}/v1/generations/${id}`, { headers })).json()) as Record<string, unknown>;
    if (status.state !== 'queued' && status.state !== 'running') return status;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// HTTP requests to `kosmos-g serve`, as raw bytes on a real loopback socket: each worker starts one
// server on a tiny random pipeline and sends every case to it. Seeds are valid requests to every
// route (JSON and multipart submissions, cancels, event streams, images, the page); mutations
// change the request line, a header (cross-origin, foreign Host, odd content types, chunked
// bodies, wrong lengths), the JSON or multipart body, or any byte. The server's contract: every
// answer is a well-formed HTTP response, never a 500, and every error body is
// `{error: {code, message}}` with a one-line message; a crash or a hang is found by the harness.
import { connect } from 'node:net';
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import sharp from 'sharp';
import { createRandomPipeline } from '../../src/pipeline/random_pipeline.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { mutateJson } from '../json-mutate.js';
import { mutateBytes, mutateText } from '../mutate.js';
import type { Random } from '../random.js';
import { ContractViolation } from '../verdict.js';
import type { Seed, Target } from './target.js';

/** Longest head made by mutation; the server's parser refuses longer ones (431) anyway. */
const MAX_HEAD_LENGTH = 16 * 1024;
/** How long a silent connection is waited for before the case is judged on what arrived. */
const IDLE_MS = 2000;
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

const HOST = 'Host: 127.0.0.1';
const ID = '0123456789abcdef0123456789abcdef';

/** A request from its head lines and body, Content-Length filled in. */
function request(lines: string[], body = ''): Uint8Array {
  const head = body ? [...lines, `Content-Length: ${Buffer.byteLength(body)}`] : lines;
  return Buffer.from(`${head.join('\r\n')}\r\n\r\n${body}`, 'latin1');
}

async function multipartSeed(): Promise<Uint8Array> {
  const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).png().toBuffer();
  const boundary = 'fuzzboundary';
  const field = (name: string, value: string) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const body =
    field('prompt', '<i> on a beach') +
    field('steps', '1') +
    `--${boundary}\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n${png.toString('latin1')}\r\n--${boundary}--\r\n`;
  return request(['POST /v1/generations HTTP/1.1', HOST, `Content-Type: multipart/form-data; boundary=${boundary}`, 'Connection: close'], body);
}

const HEADER_PIECES = [
  'Origin: null',
  'Origin: https://evil.example',
  'Origin: http://127.0.0.1',
  'Sec-Fetch-Site: cross-site',
  'Host: attacker.example',
  'Host: [::1]:99999',
  'Content-Type: application/json; charset=utf-16',
  'Content-Type: multipart/form-data',
  'Content-Type: multipart/form-data; boundary=',
  'Content-Type: text/plain',
  'Transfer-Encoding: chunked',
  'Content-Length: -1',
  'Content-Length: 99999999999',
  'Authorization: Bearer x',
  'Expect: 100-continue',
  'Connection: keep-alive',
];

function mutateHead(head: string, random: Random): string {
  const lines = head.split('\r\n');
  const index = random.range(0, lines.length - 1);
  switch (random.range(0, 3)) {
    case 0:
      lines.splice(random.range(1, lines.length), 0, random.pick(HEADER_PIECES));
      break;
    case 1:
      if (lines.length > 1) lines.splice(random.range(1, lines.length - 1), 1);
      break;
    default:
      lines[index] = mutateText(lines[index]!, random, MAX_HEAD_LENGTH);
  }
  return lines.join('\r\n');
}

function mutateBody(body: Buffer, random: Random): Buffer {
  const text = body.toString('latin1');
  if (text.startsWith('{') && random.chance(0.8)) return Buffer.from(mutateJson(text, random), 'utf8');
  return Buffer.from(mutateBytes(body, random, 3));
}

/** Sets Content-Length to the body's length (usually: a wrong length is a case of its own). */
function fixLength(head: string, bodyLength: number): string {
  return head.replace(/^Content-Length:.*$/im, `Content-Length: ${bodyLength}`);
}

let server: Promise<{ running: RunningServer; internalErrors: Error[] }> | undefined;

/** This worker's server, started on first use. */
function workerServer(scratch: string): Promise<{ running: RunningServer; internalErrors: Error[] }> {
  server ??= (async () => {
    const folder = join(scratch, `server-${process.pid}`);
    await mkdir(folder, { recursive: true });
    await createRandomPipeline(join(folder, 'tiny'), { config: 'tiny' });
    const internalErrors: Error[] = [];
    const running = await startServer({
      model: join(folder, 'tiny'),
      data: join(folder, 'data'),
      port: 0,
      threads: 1,
      maxQueue: 4,
      rateLimit: 1_000_000,
      warn: () => {},
      onInternalError: (error) => internalErrors.push(error),
    });
    return { running, internalErrors };
  })();
  return server;
}

/** Sends the bytes, half-closes, and collects the answer until the server closes or goes quiet. */
function exchange(port: number, input: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const socket = connect({ host: '127.0.0.1', port });
    let idle: NodeJS.Timeout | undefined;
    const finish = () => {
      clearTimeout(idle);
      socket.destroy();
      resolve(Buffer.concat(chunks));
    };
    const wait = () => {
      clearTimeout(idle);
      idle = setTimeout(finish, IDLE_MS);
    };
    socket.on('connect', () => {
      socket.end(input);
      wait();
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      const text = Buffer.concat(chunks).toString('latin1');
      const headEnd = text.indexOf('\r\n\r\n');
      // An event stream stays open: its first event is answer enough.
      const streaming = headEnd >= 0 && /^content-type: text\/event-stream/im.test(text.slice(0, headEnd)) && text.includes('\n\n', headEnd + 4);
      if (size > MAX_RESPONSE_BYTES || streaming) finish();
      else wait();
    });
    socket.on('close', finish);
    socket.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' || error.code === 'EPIPE' ? finish() : reject(error)));
  });
}

/** Checks every response in the bytes received. */
function judge(answer: Buffer, internalErrors: Error[]): void {
  const [internal] = internalErrors.splice(0);
  // The server's own error, as thrown, so the finding points at its site.
  if (internal) throw internal;
  const text = answer.toString('latin1');
  for (const match of text.matchAll(/HTTP\/1\.1 (\d{3}) [^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n/g)) {
    const status = Number(match[1]);
    if (status >= 500 && status !== 503) throw new ContractViolation(`the server answered ${status}`);
    const headers = match[2]!;
    if (status >= 400 && /^content-type: application\/json/im.test(headers)) {
      const length = Number(/^content-length: (\d+)/im.exec(headers)?.[1] ?? -1);
      const start = match.index! + match[0].length;
      const body = length >= 0 ? answer.subarray(start, start + length).toString('utf8') : '';
      let error: { code?: unknown; message?: unknown } | undefined;
      try {
        error = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown } }).error;
      } catch {
        // Judged below.
      }
      if (typeof error?.code !== 'string' || typeof error.message !== 'string' || /[\r\n]/.test(error.message)) {
        throw new ContractViolation(`a ${status} answer whose body is not {error: {code, message}} with a one-line message: ${body.slice(0, 200)}`);
      }
    }
  }
}

/** Cancels whatever the case queued, so the next case finds an idle server. */
async function cancelAll(running: RunningServer): Promise<void> {
  const { generations } = (await (await fetch(`${running.url}/v1/generations?limit=1000`)).json()) as { generations: { id: string; state: string }[] };
  for (const job of generations) {
    if (job.state === 'queued' || job.state === 'running') await fetch(`${running.url}/v1/generations/${job.id}`, { method: 'DELETE' });
  }
}

export const httpTarget: Target = {
  name: 'http',
  description: 'raw HTTP requests to kosmos-g serve on a loopback socket (every route, JSON and multipart submissions); answers must be well-formed, never 500, errors {error: {code, message}}',
  async seeds(): Promise<Seed[]> {
    const json = (body: unknown, extra: string[] = []) => request(['POST /v1/generations HTTP/1.1', HOST, 'Content-Type: application/json', ...extra, 'Connection: close'], JSON.stringify(body));
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'blue' } }).png().toBuffer();
    const get = (path: string) => request([`GET ${path} HTTP/1.1`, HOST, 'Connection: close']);
    return [
      { variant: 'submit-json', bytes: json({ prompt: 'a cat', steps: 1, seed: 1, guidance: 3, numImages: 1 }) },
      { variant: 'submit-json', bytes: json({ prompt: '<i> on a beach', images: [`data:image/png;base64,${png.toString('base64')}`], steps: 1, lora: { name: 'x' } }, ['Origin: http://127.0.0.1']) },
      { variant: 'submit-multipart', bytes: await multipartSeed() },
      { variant: 'routes', bytes: get('/v1/generations?limit=3') },
      { variant: 'routes', bytes: get(`/v1/generations/${ID}`) },
      { variant: 'routes', bytes: get(`/v1/generations/${ID}/events`) },
      { variant: 'routes', bytes: get(`/v1/images/${ID}-0.png`) },
      { variant: 'routes', bytes: get('/v1/models') },
      { variant: 'routes', bytes: get('/healthz') },
      { variant: 'routes', bytes: get('/') },
      { variant: 'routes', bytes: request([`DELETE /v1/generations/${ID} HTTP/1.1`, HOST, 'Connection: close']) },
    ];
  },
  mutate(seed, random) {
    const bytes = Buffer.from(seed.bytes);
    if (random.chance(0.15)) return mutateBytes(bytes, random, 3);
    const split = bytes.indexOf('\r\n\r\n');
    let head = bytes.subarray(0, split).toString('latin1');
    let body: Buffer = bytes.subarray(split + 4);
    if (random.chance(0.5)) head = mutateHead(head, random);
    else body = mutateBody(body, random);
    if (random.chance(0.8)) head = fixLength(head, body.length);
    return Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from('\r\n\r\n'), body]);
  },
  async run(_variant, input, scratch) {
    const { running, internalErrors } = await workerServer(scratch);
    const answer = await exchange(Number(new URL(running.url).port), input);
    try {
      judge(answer, internalErrors);
    } finally {
      await cancelAll(running);
    }
    // Refused or accepted, the server answered as it should; say which.
    const status = /^HTTP\/1\.1 (\d{3})/.exec(answer.toString('latin1'))?.[1];
    if (status === undefined) throw new Error('the server closed the connection without an answer');
    if (Number(status) >= 400) throw new Error(`answered ${status}`);
  },
};

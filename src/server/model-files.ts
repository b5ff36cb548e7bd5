// The served model's folder at `/model/`, for pages that generate on their own device: the files
// themselves (fastify-static: no listing, no dotfiles, no path outside the folder) and `files.json`,
// the manifest a page reads instead of listing a folder (io/folder-manifest.ts), hashed once, on the
// first request. Every answer of the server also carries the cross-origin isolation headers, so the
// page may use SharedArrayBuffer, which multi-threaded WebAssembly needs.
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { MANIFEST_FILE, folderManifest } from '../io/folder-manifest.js';

export const MODEL_FILES_PREFIX = '/model/';

export const ISOLATION_HEADERS: Readonly<Record<string, string>> = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
};

export async function registerModelFiles(app: FastifyInstance, folder: string): Promise<void> {
  app.addHook('onSend', async (_request, reply) => {
    reply.headers(ISOLATION_HEADERS);
  });
  let manifest: ReturnType<typeof folderManifest> | undefined;
  app.get(`${MODEL_FILES_PREFIX}${MANIFEST_FILE}`, async (_request, reply) => {
    manifest ??= folderManifest(folder);
    manifest.catch(() => (manifest = undefined));
    return reply.header('cache-control', 'no-cache').send(await manifest);
  });
  await app.register(fastifyStatic, { root: folder, prefix: MODEL_FILES_PREFIX, decorateReply: false, dotfiles: 'deny', index: false, list: false });
}

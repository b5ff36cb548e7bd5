// Child process that rasterises SVG documents with resvg. resvg-js aborts the whole process on a
// few icons (a Rust panic that JavaScript cannot catch), so rendering happens here, where an abort
// only costs the parent one respawn. Protocol (advanced IPC serialisation): the parent sends
// { key, svg, size } messages; the child answers { key, width, height, pixels } or { key, error }.
import { Resvg } from '@resvg/resvg-js';

export interface RenderRequest {
  key: string;
  svg: string;
  size: number;
}

export type RenderReply =
  | { key: string; width: number; height: number; pixels: Uint8Array }
  | { key: string; error: string };

function render(request: RenderRequest): RenderReply {
  try {
    const resvg = new Resvg(request.svg, { fitTo: { mode: 'width', value: request.size }, font: { loadSystemFonts: false } });
    const image = resvg.render();
    return { key: request.key, width: image.width, height: image.height, pixels: new Uint8Array(image.pixels) };
  } catch (error) {
    return { key: request.key, error: error instanceof Error ? error.message : String(error) };
  }
}

process.on('message', (message: RenderRequest) => {
  process.send?.(render(message));
});

// Whether each subject of an image stands where a layout map put it, without any model: a subject
// counts as placed when at least half of its pixels in the map (the pixels of its concept's layout
// colour, control-maps.ts) are foreground in the image, foreground meaning a colour away from every
// colour of the image's frame (subject-locator.ts). A layout ControlNet should place its subjects;
// the same model without it places them only where it happens to draw them; the true scenes give
// the measure's ceiling (a subject drawn in its background's colours is not foreground).
import { layoutColour } from '../pipeline/control-maps.js';
import type { RgbaImage } from '../world/image.js';
import { foregroundWeights } from './subject-locator.js';

/** The share of a subject's map pixels that must be foreground. */
export const PLACED_FRACTION = 0.5;

/**
 * Per concept: whether it is placed (see the file comment), or null when the map shows none of it
 * (a subject hidden behind another). The map is read at the image's size, nearest pixel, so a map
 * at the scene size serves a larger generation too.
 */
export function subjectsPlaced(image: RgbaImage, map: RgbaImage, concepts: readonly string[]): (boolean | null)[] {
  const foreground = foregroundWeights(image);
  return concepts.map((concept) => {
    const [r, g, b] = layoutColour(concept);
    let [inMask, covered] = [0, 0];
    for (let y = 0; y < image.height; y++) {
      const my = Math.floor((y * map.height) / image.height);
      for (let x = 0; x < image.width; x++) {
        const i = (my * map.width + Math.floor((x * map.width) / image.width)) * 4;
        if (map.data[i] !== r || map.data[i + 1] !== g || map.data[i + 2] !== b) continue;
        inMask++;
        if (foreground[y * image.width + x]! > 0) covered++;
      }
    }
    return inMask ? covered / inMask >= PLACED_FRACTION : null;
  });
}

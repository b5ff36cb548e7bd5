// Words the world's captions use around subject names. Subject names (emoji labels and tags) that
// collide with these are not used as names, so that finding a subject in a caption stays exact.

export const POSITIONS = [
  'left',
  'right',
  'top',
  'bottom',
  'centre',
  'top left',
  'top right',
  'bottom left',
  'bottom right',
] as const;
export type Position = (typeof POSITIONS)[number];

/** Centre of each position as a fraction of the canvas. */
export const POSITION_CENTRES: Record<Position, readonly [number, number]> = {
  left: [0.25, 0.5],
  right: [0.75, 0.5],
  top: [0.5, 0.25],
  bottom: [0.5, 0.75],
  centre: [0.5, 0.5],
  'top left': [0.25, 0.25],
  'top right': [0.75, 0.25],
  'bottom left': [0.25, 0.75],
  'bottom right': [0.75, 0.75],
};

/** How each position is said in a caption. */
export const POSITION_PHRASES: Record<Position, readonly string[]> = {
  left: ['on the left', 'at the left'],
  right: ['on the right', 'at the right'],
  top: ['at the top', 'in the upper part'],
  bottom: ['at the bottom', 'in the lower part'],
  centre: ['in the centre', 'in the middle'],
  'top left': ['at the top left', 'in the upper left corner'],
  'top right': ['at the top right', 'in the upper right corner'],
  'bottom left': ['at the bottom left', 'in the lower left corner'],
  'bottom right': ['at the bottom right', 'in the lower right corner'],
};

export const SIZES = ['small', 'medium', 'large'] as const;
export type SizeWord = (typeof SIZES)[number];

/** Longest side of a subject as a fraction of the canvas side. */
export const SIZE_FRACTIONS: Record<SizeWord, number> = { small: 0.3, medium: 0.42, large: 0.58 };

export const SIZE_PHRASES: Record<SizeWord, readonly string[]> = {
  small: ['small', 'little', 'tiny'],
  medium: [''],
  large: ['large', 'big'],
};

export const COLOUR_NAMES: Record<string, readonly [number, number, number]> = {
  red: [214, 64, 58],
  orange: [240, 150, 50],
  yellow: [246, 216, 80],
  green: [96, 178, 88],
  teal: [60, 160, 160],
  blue: [70, 130, 220],
  purple: [150, 90, 200],
  pink: [240, 150, 190],
  brown: [140, 96, 60],
  grey: [150, 150, 150],
  white: [246, 246, 246],
  black: [30, 30, 34],
  beige: [226, 210, 176],
  navy: [36, 52, 110],
};

/** Function words of the caption and instruction templates. */
export const TEMPLATE_WORDS = [
  'a', 'an', 'the', 'and', 'with', 'on', 'in', 'at', 'of', 'to', 'by', 'next', 'under', 'over', 'front',
  'style', 'styled', 'drawn', 'drawing', 'picture', 'image', 'scene', 'emoji', 'icon', 'background',
  'gradient', 'pattern', 'texture', 'upper', 'lower', 'part', 'corner', 'middle', 'center', 'side',
  'add', 'remove', 'replace', 'move', 'change', 'put', 'make', 'turn', 'swap', 'take', 'away', 'instead',
  'there', 'is', 'are', 'it', 'its', 'into', 'from', 'place', 'delete', 'set', 'show', 'showing',
  'shows', 'here', 'version', 'same', 'one', 'two', 'three', 'everything',
] as const;

/** Phrases placing subjects in a scene-emoji background, keyed by emoji label. */
export const SCENE_PHRASES: Record<string, string> = {
  'beach with umbrella': 'on a beach',
  desert: 'in the desert',
  'desert island': 'on a desert island',
  'national park': 'in a national park',
  'sunrise over mountains': 'at sunrise over mountains',
  sunrise: 'at sunrise',
  'night with stars': 'at night under the stars',
  cityscape: 'in the city',
  'cityscape at dusk': 'in the city at dusk',
  'sunset': 'at sunset',
  'bridge at night': 'by a bridge at night',
  'milky way': 'under the milky way',
  'snow-capped mountain': 'in the snowy mountains',
  foggy: 'in foggy weather',
  fireworks: 'under fireworks',
  camping: 'at a campsite',
  'water wave': 'in the waves',
};

// What a texture looks like, from its file name, then its folder; checked in order.
export const PATTERN_PHRASES: readonly (readonly [RegExp, string])[] = [
  [/marble/, 'on marble'],
  [/granite/, 'on granite'],
  [/brick/, 'in front of bricks'],
  [/slate|stone|rock|pebble/, 'on stones'],
  [/crater|moonfoot/, 'on a cratered surface'],
  [/cracked|drymud|dirt|ground|terra|land/, 'on dry ground'],
  [/amethyst|crystal/, 'on crystals'],
  [/bark/, 'on tree bark'],
  [/cork/, 'on cork'],
  [/wood|parque|walnut|pine/, 'on wooden boards'],
  [/leaves|clover|plant/, 'on leaves'],
  [/flower/, 'on a floral pattern'],
  [/pool|water|wave|torrent/, 'on water'],
  [/ice/, 'on an icy surface'],
  [/rain/, 'in the rain'],
  [/cloud|sky/, 'in the sky'],
  [/starfield/, 'in space'],
  [/lightning|electric/, 'in a storm'],
  [/dune|sand/, 'on sand'],
  [/canyon|mars/, 'in a canyon'],
  [/paper/, 'on paper'],
  [/burlap|weave|fiber|cloth|curtain/, 'on fabric'],
  [/leather/, 'on leather'],
  [/leopard|cow/, 'on an animal print'],
  [/gold/, 'on gold'],
  [/silver|metal|rust|chex/, 'on metal'],
  [/tile|floor|grid|square|cube|qube/, 'on tiles'],
  [/stripe/, 'on stripes'],
  [/swirl|whirl/, 'on swirls'],
  [/java|choc|brownie|cashew|cheese/, 'on a food texture'],
];


export const GENERIC_PATTERN_PHRASE = 'on a patterned background';

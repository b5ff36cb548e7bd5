// Reading Iconify JSON icon sets from node_modules and turning one icon into a standalone SVG.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

interface IconifyIcon {
  body: string;
  width?: number;
  height?: number;
  left?: number;
  top?: number;
  rotate?: number;
  hFlip?: boolean;
  vFlip?: boolean;
}

interface IconifyAlias extends Omit<IconifyIcon, 'body'> {
  parent: string;
}

interface IconifyJson {
  prefix: string;
  icons: Record<string, IconifyIcon>;
  aliases?: Record<string, IconifyAlias>;
  width?: number;
  height?: number;
  left?: number;
  top?: number;
}

export interface IconSetInfo {
  packageName: string;
  version: string;
  license: string;
  licenseUrl: string;
  author: string;
  authorUrl: string;
}

export interface IconSet {
  info: IconSetInfo;
  /** Icon and alias names. */
  names: Set<string>;
  /** Unicode code points (lower-case hex joined by '-', FE0F removed) to icon name, where the set ships chars.json. */
  chars: Map<string, string>;
  /** Standalone SVG document for an icon or alias, or null when the set has no such name. */
  svg(name: string): string | null;
}

const requireFromHere = createRequire(import.meta.url);

function resolvePackageFile(packageName: string, file: string): string {
  try {
    return requireFromHere.resolve(`${packageName}/${file}`);
  } catch {
    throw new Error(`package ${packageName} is not installed (npm install ${packageName}); the emoji world reads its ${file}`);
  }
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

export function normaliseCodepoints(hex: string): string {
  return hex
    .toLowerCase()
    .split(/[-_ ]/)
    .filter((part) => part !== 'fe0f' && part.length > 0)
    .join('-');
}

const setCache = new Map<string, IconSet>();

export function loadIconSet(packageName: string): IconSet {
  const cached = setCache.get(packageName);
  if (cached) return cached;
  const pkg = readJson<{ version: string }>(resolvePackageFile(packageName, 'package.json'));
  const infoJson = readJson<{ license: { spdx: string; url: string }; author: { name: string; url: string } }>(
    resolvePackageFile(packageName, 'info.json'),
  );
  const json = readJson<IconifyJson>(resolvePackageFile(packageName, 'icons.json'));
  const rawChars = readJson<Record<string, string>>(resolvePackageFile(packageName, 'chars.json'));
  const chars = new Map<string, string>();
  for (const [hex, name] of Object.entries(rawChars)) chars.set(normaliseCodepoints(hex), name);
  const aliases = json.aliases ?? {};
  const names = new Set([...Object.keys(json.icons), ...Object.keys(aliases)]);

  const resolve = (name: string, depth: number): IconifyIcon | null => {
    if (depth > 8) return null;
    const icon = json.icons[name];
    if (icon) return icon;
    const alias = aliases[name];
    if (!alias) return null;
    const parent = resolve(alias.parent, depth + 1);
    if (!parent) return null;
    const { parent: _parentName, ...overrides } = alias;
    void _parentName;
    return {
      ...parent,
      ...overrides,
      hFlip: Boolean(parent.hFlip) !== Boolean(alias.hFlip),
      vFlip: Boolean(parent.vFlip) !== Boolean(alias.vFlip),
      rotate: ((parent.rotate ?? 0) + (alias.rotate ?? 0)) % 4,
    };
  };

  const set: IconSet = {
    info: {
      packageName,
      version: pkg.version,
      license: infoJson.license.spdx,
      licenseUrl: infoJson.license.url,
      author: infoJson.author.name,
      authorUrl: infoJson.author.url,
    },
    names,
    chars,
    svg(name: string): string | null {
      const icon = resolve(name, 0);
      if (!icon) return null;
      const left = icon.left ?? json.left ?? 0;
      const top = icon.top ?? json.top ?? 0;
      const width = icon.width ?? json.width ?? 16;
      const height = icon.height ?? json.height ?? 16;
      const transforms: string[] = [];
      if (icon.hFlip) transforms.push(`translate(${2 * left + width} 0) scale(-1 1)`);
      if (icon.vFlip) transforms.push(`translate(0 ${2 * top + height}) scale(1 -1)`);
      if (icon.rotate) transforms.push(`rotate(${90 * icon.rotate} ${left + width / 2} ${top + height / 2})`);
      const body = transforms.length > 0 ? `<g transform="${transforms.join(' ')}">${icon.body}</g>` : icon.body;
      return (
        `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" ` +
        `width="${width}" height="${height}" viewBox="${left} ${top} ${width} ${height}">${body}</svg>`
      );
    },
  };
  setCache.set(packageName, set);
  return set;
}

export function packageVersion(packageName: string): string {
  return readJson<{ version: string }>(resolvePackageFile(packageName, 'package.json')).version;
}

export function readPackageJson<T>(packageName: string, file: string): T {
  return readJson<T>(resolvePackageFile(packageName, file));
}

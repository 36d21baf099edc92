// Files found relative to the running code, the same from src/ under tsx and from dist/ under node.
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

/** True when this code runs compiled (dist/src/…/*.js), false when tsx runs the sources. */
export const compiled = extname(fileURLToPath(import.meta.url)) === '.js';

/** The repository (or image) root: above src/, or above dist/ when compiled. */
export const projectRoot = fileURLToPath(new URL(compiled ? '../../' : '../', import.meta.url));

/**
 * The module at `relative` (written without extension) beside the module `base` (its
 * import.meta.url), with base's own extension: `.ts` under tsx, `.js` in the build.
 */
export function siblingModule(relative: string, base: string): string {
  const path = fileURLToPath(base);
  return fileURLToPath(new URL(`${relative}${extname(path)}`, base));
}

import { fileURLToPath } from 'node:url'

/** The templates shipped with honeytrap-ts (the package's templates/ folder), used when the config names none. */
export function shippedTemplatesDir(): string {
  // This file sits at src/config/ (tests) or dist/config/ (built): the package root is two levels up either way.
  return fileURLToPath(new URL('../../templates', import.meta.url))
}

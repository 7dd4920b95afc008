import { fileURLToPath } from 'node:url'

/**
 * The compiled script `name` of the folder of the module at `moduleUrl` (its `import.meta.url`). Threads and child
 * processes cannot run TypeScript sources, so code running from src/ (the test runner) uses the build in dist/, which
 * `npm test` makes first.
 */
export function compiledScript(moduleUrl: string, name: string): string {
  const url = new URL(name, moduleUrl)
  if (!moduleUrl.endsWith('.ts')) return fileURLToPath(url)
  // src/<folder>/<name> → dist/<folder>/<name>
  return fileURLToPath(new URL(`../../dist/${url.pathname.split('/').at(-2) ?? ''}/${name}`, url))
}

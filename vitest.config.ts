import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Namespace tests share the kernel's netfilter state per namespace, not globally, but they spawn sensors and
    // clients: run files one at a time so a 2-core machine measures real behaviour, not contention.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
})

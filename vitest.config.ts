// Test projects: unit (pure logic, colocated *.test.ts), integration (real sockets, real SQLite
// file, no root) and root (network namespaces, real WireGuard; they skip themselves unless root).
import {defineConfig} from 'vitest/config'

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['{cli,daemon,controller,shared}/**/*.test.{ts,tsx}', 'test/**/*.unit.test.ts'],
          exclude: ['**/*.integration.test.ts', '**/*.root.test.ts', 'node_modules/**', 'dist/**'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['**/*.integration.test.ts'],
          exclude: ['node_modules/**', 'dist/**'],
          testTimeout: 120_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'root',
          include: ['**/*.root.test.ts'],
          exclude: ['node_modules/**', 'dist/**'],
          testTimeout: 180_000,
          hookTimeout: 120_000,
          // Namespaces and wireguard-go are machine-wide: one file at a time.
          fileParallelism: false,
        },
      },
    ],
  },
})

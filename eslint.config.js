// Lint rules, including the dependency direction: cli, daemon and controller each depend on
// shared/, never on each other. The two allowed edges are the lazy imports of the daemon's and
// the controller's single `main` entry from `mesh daemon run` and `mesh controller start`.
import tseslint from 'typescript-eslint'

// Tests and testing/ harnesses may cross programs on purpose (an admin-CLI test starts a controller).
const TESTS = ['**/*.test.ts', '**/*.test.tsx', '**/testing/**']

const forbid = (...groups) => ({
  'no-restricted-imports': [
    'error',
    {patterns: groups.map((g) => ({group: g.patterns, message: g.message}))},
  ],
})

export default tseslint.config(
  {ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'oclif.manifest.json']},
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_', varsIgnorePattern: '^_'}],
      'no-restricted-properties': [
        'error',
        {object: 'os', property: 'homedir', message: 'use shared/paths.ts'},
      ],
    },
  },
  {
    files: ['shared/**'],
    rules: forbid({
      patterns: ['**/cli/**', '**/daemon/**', '**/controller/**'],
      message: 'shared/ imports nothing from the programs',
    }),
  },
  {
    files: ['cli/**'],
    ignores: ['cli/commands/daemon/run.ts', 'cli/commands/controller/start.ts', ...TESTS],
    rules: forbid({
      patterns: ['**/daemon/**', '**/controller/**'],
      message: 'the CLI reaches meshd and the controller over their APIs only',
    }),
  },
  {
    files: ['daemon/**'],
    ignores: TESTS,
    rules: forbid({patterns: ['**/cli/**', '**/controller/**'], message: 'meshd depends on shared/ only'}),
  },
  {
    files: ['controller/**'],
    ignores: TESTS,
    rules: forbid({
      patterns: ['**/cli/**', '**/daemon/**'],
      message: 'the controller depends on shared/ only',
    }),
  },
  {
    files: ['shared/paths.ts'],
    rules: {'no-restricted-properties': 'off'},
  },
)

// Lint rules that keep the workflow sandbox deterministic and every promise handled.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const nodeBuiltins = [
  'assert',
  'buffer',
  'child_process',
  'cluster',
  'crypto',
  'dgram',
  'dns',
  'events',
  'fs',
  'fs/promises',
  'http',
  'http2',
  'https',
  'net',
  'os',
  'path',
  'perf_hooks',
  'process',
  'readline',
  'stream',
  'timers',
  'tls',
  'url',
  'util',
  'worker_threads',
  'zlib',
];

export default tseslint.config(
  { ignores: ['node_modules/**', '.data/**', 'dist/**', 'drizzle/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
      globals: {
        process: 'readonly',
        console: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        fetch: 'readonly',
        AbortController: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': [
        'error',
        { checksVoidReturn: { arguments: false } },
      ],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true },
      ],
      'no-console': 'error',
    },
  },
  {
    files: ['src/workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            ...nodeBuiltins.map((name) => ({
              name,
              message: 'Workflow code runs in a deterministic sandbox: no Node built-ins.',
            })),
            ...nodeBuiltins.map((name) => ({
              name: `node:${name}`,
              message: 'Workflow code runs in a deterministic sandbox: no Node built-ins.',
            })),
          ],
          patterns: [
            {
              group: [
                'drizzle-orm',
                'drizzle-orm/*',
                'postgres',
                'stripe',
                'pino',
                '@temporalio/client',
                '@temporalio/worker',
                '@temporalio/activity',
              ],
              message: 'Workflows do no I/O: call an activity instead.',
            },
            {
              group: ['../activities/*', '../db/*', '../ledger/*', '../api/*', '../config*'],
              allowTypeImports: true,
              message: 'Workflows import activity types only (import type).',
            },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'process', message: 'No process in workflows.' },
      ],
      'no-restricted-syntax': [
        'error',
        {
          selector: "MemberExpression[object.name='Math'][property.name='random']",
          message: 'Use uuid4() or a value passed in.',
        },
      ],
    },
  },
  {
    files: [
      'scripts/**/*.ts',
      'scripts/**/*.js',
      'bench/**/*.ts',
      'chaos/**/*.ts',
      'src/start.ts',
      'src/stack/**/*.ts',
    ],
    rules: { 'no-console': 'off' },
  },
  {
    // Asymmetric matchers (expect.objectContaining, …) are typed any by design.
    files: ['test/**/*.ts', 'src/**/*.test.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
    },
  },
  {
    files: ['**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // The dashboard's modules run in the browser.
    files: ['src/dashboard/static/**/*.js'],
    languageOptions: {
      globals: {
        document: 'readonly',
        sessionStorage: 'readonly',
        crypto: 'readonly',
        atob: 'readonly',
        Node: 'readonly',
        Intl: 'readonly',
        URLSearchParams: 'readonly',
        TextDecoderStream: 'readonly',
        CustomEvent: 'readonly',
      },
    },
  },
);

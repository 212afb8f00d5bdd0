// Flat config: typescript-eslint's type-checked rules catch the async mistakes that matter most in a daemon
// (floating promises, misused promises in callbacks), which a syntax-only linter cannot see.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import globals from 'globals'
import { CONSOLE, LAYERS, layersPlugin } from './eslint-layers.js'

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'coverage/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: { ...globals.node },
      parserOptions: { projectService: { allowDefaultProject: ['*.js', 'test/*.mjs'] }, tsconfigRootDir: import.meta.dirname }
    },
    rules: {
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }]
      }],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true, allowNullish: true, allowAny: false }],
      '@typescript-eslint/require-await': 'off',
      'eqeqeq': ['error', 'smart'],
      'no-console': 'off'
    }
  },
  {
    // The web console runs in the browser (its own tsconfig: DOM, JSX for preact); its build script runs in Node.
    files: [`${CONSOLE}/**/*.ts`, `${CONSOLE}/**/*.tsx`],
    languageOptions: { globals: { ...globals.browser } }
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked
  },
  {
    // The folders' dependency order (eslint-layers.js, README "Layout"): a wrong-way import fails `npm test`.
    files: [...LAYERS.map((l) => `${l}/**/*.ts`), `${CONSOLE}/**/*.ts`, `${CONSOLE}/**/*.tsx`],
    plugins: { layers: layersPlugin },
    rules: { 'layers/order': 'error' }
  }
)

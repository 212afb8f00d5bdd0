// Types of eslint-layers.js (plain JavaScript, as eslint.config.js loads it without a TypeScript loader).
import type { Rule } from 'eslint'

export declare const LAYERS: string[]
export declare const CONSOLE: string
export declare const layersPlugin: { rules: { order: Rule.RuleModule } }

export { parseType, offsetSizeFor, type GType } from './types';
export { serialize } from './serialize';
export { parse, isNormalForm } from './parse';
export { Variant, type VarDict, dictGet, dictGetTyped } from './variant';

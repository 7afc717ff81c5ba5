/**
 * JS values for GVariant data:
 *   y n q i u h → number; x t → bigint; b → boolean; d → number; s o g → string;
 *   ay → Buffer; other arrays → unknown[]; maybe → value | null;
 *   tuple → unknown[]; dict entry → [key, value]; v → Variant.
 */
export class Variant {
  constructor(
    readonly type: string,
    readonly value: unknown,
  ) {}
}

/** a{sv} as an ordered list of entries: key order is free in OSTree, so we keep what we were given. */
export type VarDict = Array<[string, Variant]>;

export function dictGet(dict: VarDict, key: string): Variant | undefined {
  for (const [k, v] of dict) if (k === key) return v;
  return undefined;
}

export function dictGetTyped<T>(dict: VarDict, key: string, type: string): T | undefined {
  const v = dictGet(dict, key);
  return v && v.type === type ? (v.value as T) : undefined;
}

/**
 * Addressing nodes inside a JSON value: list every node's path, read one, and build a copy with
 * one node replaced or removed (the template is never modified).
 */
export type JsonPath = ReadonlyArray<string | number>;

/** Every node of `value` (the root first), depth-first. */
export function allPaths(value: unknown, at: JsonPath = []): JsonPath[] {
  const out: JsonPath[] = [at];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...allPaths(v, [...at, i])));
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) out.push(...allPaths(v, [...at, k]));
  return out;
}

export function getAt(value: unknown, path: JsonPath): unknown {
  let v: unknown = value;
  for (const k of path) v = (v as Record<string | number, unknown> | undefined)?.[k];
  return v;
}

function copy(v: unknown): unknown {
  return Array.isArray(v) ? [...v] : v && typeof v === 'object' ? { ...(v as object) } : v;
}

/** A copy of `value` with the node at `path` set to `node` (`undefined` with `remove` deletes it). */
export function setAt(value: unknown, path: JsonPath, node: unknown, remove = false): unknown {
  if (path.length === 0) return node;
  const root = copy(value) as Record<string | number, unknown>;
  let parent = root;
  for (let i = 0; i < path.length - 1; i++) {
    const child = copy(parent[path[i]]) as Record<string | number, unknown>;
    parent[path[i]] = child;
    parent = child;
  }
  const last = path[path.length - 1];
  if (remove) {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else {
    // a property named __proto__ must become an own property, as JSON.parse makes it
    Object.defineProperty(parent, last, { value: node, enumerable: true, writable: true, configurable: true });
  }
  return root;
}

/** JSON Pointer text of a path, for labels. */
export function pointer(path: JsonPath): string {
  return path.length === 0 ? '(whole body)' : `/${path.map((k) => String(k).replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;
}

/**
 * Groups items by key, keeping their order within each group. Linear: batches of tens of thousands of
 * changes are grouped per table or region on hot paths (copying a group per item would be quadratic).
 */
export function groupBy<K, V>(items: Iterable<V>, key: (v: V) => K): Map<K, V[]> {
  const out = new Map<K, V[]>();
  for (const v of items) {
    const k = key(v);
    const list = out.get(k);
    if (list) list.push(v);
    else out.set(k, [v]);
  }
  return out;
}

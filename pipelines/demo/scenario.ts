import type { Supplier } from '../../connectors/registry/loader.js';
import { compileMapping } from '../normalize/mapping.js';
import { SimulatedTable, type RawMessage } from './simulated-table.js';

/** A scripted sequence of supplier changes, and the supplier tables as they end up. */
export interface Scenario {
  steps: Array<{ title: string; messages: RawMessage[] }>;
  tables: Array<{ supplierId: string; table: SimulatedTable }>;
}

/**
 * The demo's story: two suppliers stock up, sell, move stock between regions, delete rows, re-insert,
 * and the connector redelivers an event. Tables match connectors/suppliers/demo.
 */
export function demoScenario(): Scenario {
  const north = new SimulatedTable(
    { connector: 'postgresql', name: 'north', db: 'inventory', schema: 'public', table: 'stock' },
    [{ name: 'id', type: 'int32', optional: false }, { name: 'item_code', type: 'string' }, { name: 'depot', type: 'string' }, { name: 'qty', type: 'int32' }],
    ['id'],
  );
  const south = new SimulatedTable(
    { connector: 'mysql', name: 'south', db: 'warehouse', table: 'stock_levels' },
    [{ name: 'sku', type: 'string', optional: false }, { name: 'warehouse', type: 'string', optional: false }, { name: 'bottles', type: 'int64' }],
    ['sku', 'warehouse'],
  );
  const steps: Scenario['steps'] = [];
  const step = (title: string, ...batches: RawMessage[][]) => steps.push({ title, messages: batches.flat() });

  step(
    'North Cellars loads its depots',
    north.insert({ id: 1, item_code: 'chateau-margaux-2019', depot: 'bdx-1', qty: 120 }),
    north.insert({ id: 2, item_code: 'chateau-margaux-2019', depot: 'lyon-2', qty: 36 }),
    north.insert({ id: 3, item_code: 'rioja-reserva-2018', depot: 'lyon-2', qty: 48 }),
    north.insert({ id: 4, item_code: 'rioja-reserva-2018', depot: 'nyc-1', qty: 60 }),
    north.insert({ id: 5, item_code: 'cloudy-bay-pinot-2021', depot: 'nyc-1', qty: 24 }),
    north.insert({ id: 6, item_code: 'barolo-2016', depot: 'bdx-1', qty: 12 }),
  );
  step(
    'South Vines loads its warehouses',
    south.insert({ sku: 'SV-MAL-19', warehouse: 'sf-a', bottles: 30 }),
    south.insert({ sku: 'SV-MAL-19', warehouse: 'nj-b', bottles: 18 }),
    south.insert({ sku: 'SV-PIN-21', warehouse: 'sf-a', bottles: 72 }),
    south.insert({ sku: 'SV-RIO-18', warehouse: 'nj-b', bottles: 40 }),
  );
  const sale = north.update({ id: 1 }, { qty: 96 });
  step('Sales in Bordeaux and San Francisco', sale, south.update({ sku: 'SV-PIN-21', warehouse: 'sf-a' }, { bottles: 66 }));
  step('North moves its Lyon rioja to New York (region change)', north.update({ id: 3 }, { depot: 'nyc-1' }));
  step('Rows deleted at both suppliers', north.delete({ id: 6 }), south.delete({ sku: 'SV-MAL-19', warehouse: 'nj-b' }));
  step('The connector redelivers an event after a restart (duplicate)', sale);
  step(
    'Receipts and a re-insert',
    north.update({ id: 5 }, { qty: 48 }),
    north.insert({ id: 6, item_code: 'barolo-2016', depot: 'lyon-2', qty: 6 }),
    south.insert({ sku: 'SV-MAL-19', warehouse: 'nj-b', bottles: 12 }),
  );
  return { steps, tables: [{ supplierId: 'north-cellars', table: north }, { supplierId: 'south-vines', table: south }] };
}

/** Regional totals computed directly from the suppliers' final rows with their mappings. */
export function expectedTotals(scenario: Scenario, suppliers: Supplier[]): Map<string, { region: string; sku: string; bottles: number; contributors: number }> {
  const out = new Map<string, { region: string; sku: string; bottles: number; contributors: number }>();
  for (const { supplierId, table } of scenario.tables) {
    const supplier = suppliers.find((s) => s.id === supplierId);
    if (!supplier) throw new Error(`supplier ${supplierId} not in registry`);
    const mapping = compileMapping(supplier);
    for (const row of table.rows.values()) {
      const p = mapping.place(row);
      const k = `${p.region}|${p.sku}`;
      const cur = out.get(k) ?? { region: p.region, sku: p.sku, bottles: 0, contributors: 0 };
      cur.bottles += p.bottles;
      cur.contributors += 1;
      out.set(k, cur);
    }
  }
  return out;
}

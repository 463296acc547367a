import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import pg from 'pg';
import { lsnBefore, lsnToNumber } from '../../connectors/postgres-cdc/lsn.js';
import { timestamptzValue } from '../../connectors/postgres-cdc/pgoutput.js';

/** What the reader emitted for a `timestamptz` before: node-postgres' Date, as ISO text (numbers as they are). */
const before = (text: string): unknown => {
  const v = pg.types.getTypeParser(1184)(text) as Date | number;
  return v instanceof Date ? v.toISOString() : v;
};
const emitted = (text: string): unknown => {
  const v = timestamptzValue(text);
  return v instanceof Date ? v.toISOString() : v;
};

const two = (n: number) => String(n).padStart(2, '0');

describe('timestamptz values of the pgoutput reader', () => {
  it('gives the ISO text node-postgres gave, to the character, for any UTC time and fraction', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9999 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 28 }),
        fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 59 }),
        fc.stringMatching(/^[0-9]{0,6}$/),
        (y, mo, d, h, mi, s, frac) => {
          const text = `${String(y).padStart(4, '0')}-${two(mo)}-${two(d)} ${two(h)}:${two(mi)}:${two(s)}${frac ? `.${frac}` : ''}+00`;
          expect(emitted(text)).toBe(before(text));
        },
      ),
      { numRuns: 20_000 },
    );
  });

  it('takes the first three fraction digits as the milliseconds, as node-postgres\' arithmetic does for every fraction', () => {
    const differ: string[] = [];
    for (let i = 0; i < 1_000_000; i++) {
      const frac = String(i).padStart(6, '0');
      if (Math.trunc(1000 * parseFloat(`.${frac}`)) !== Math.floor(i / 1000)) differ.push(frac);
      if (i % 97 === 0) {
        const text = `2026-12-01 03:04:05.${frac}+00`;
        if (emitted(text) !== before(text)) differ.push(text);
      }
    }
    expect(differ).toEqual([]);
    expect(timestamptzValue('2026-12-01 03:04:05.5+00')).toBe('2026-12-01T03:04:05.500Z');
    expect(timestamptzValue('2026-12-01 03:04:05.123999+00')).toBe('2026-12-01T03:04:05.123Z');
    expect(timestamptzValue('2026-12-01 03:04:05+00')).toBe('2026-12-01T03:04:05.000Z');
  });

  it('hands anything else to node-postgres: other offsets, BC, infinity', () => {
    for (const text of ['2026-12-01 04:04:05.5+01', '2026-12-01 03:04:05-05:30', '0044-03-15 12:00:00+00 BC', 'infinity', '-infinity', '2026-12-01 24:00:00+00']) {
      expect(emitted(text)).toEqual(before(text));
      expect(typeof timestamptzValue(text)).not.toBe('string');
    }
  });
});

describe('LSNs', () => {
  it('reads X/Y as the 64-bit position, either case, and refuses anything else', () => {
    expect(lsnToNumber('0/0')).toBe(0);
    expect(lsnToNumber('16/B374D848')).toBe(0x16 * 2 ** 32 + 0xb374d848);
    expect(lsnToNumber('a/ff')).toBe(10 * 2 ** 32 + 255);
    for (const bad of ['', '/', '1/', '/1', '1/2/3', '1-2', 'G/1', '1/ 2']) expect(lsnToNumber(bad)).toBeNaN();
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 21 - 1 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), (hi, lo) => {
      const text = `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
      expect(lsnToNumber(text)).toBe(hi * 2 ** 32 + lo);
      if (hi || lo) expect(lsnToNumber(lsnBefore(text))).toBe(hi * 2 ** 32 + lo - 1);
    }));
  });
});

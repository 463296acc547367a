/** The value of one hexadecimal digit's character code, or -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * `X/Y` → the 64-bit LSN as a number (exact below 2^53, i.e. 8 PiB of WAL); NaN when `lsn` is not two
 * hexadecimal numbers around one slash. Read character by character: it runs once per streamed change,
 * and splitting allocated an array and two strings each time.
 */
export function lsnToNumber(lsn: string): number {
  let hi = -1;
  let n = 0;
  let digits = 0;
  for (let i = 0; i < lsn.length; i++) {
    const c = lsn.charCodeAt(i);
    if (c === 47 && hi < 0 && digits) {
      hi = n;
      n = 0;
      digits = 0;
      continue;
    }
    const d = hexDigit(c);
    if (d < 0) return NaN;
    n = n * 16 + d;
    digits++;
  }
  return hi >= 0 && digits ? hi * 2 ** 32 + n : NaN;
}

/** The LSN one byte before `lsn`, as `X/Y`. */
export function lsnBefore(lsn: string): string {
  const n = Math.max(0, lsnToNumber(lsn) - 1);
  return `${Math.floor(n / 2 ** 32).toString(16).toUpperCase()}/${(n % 2 ** 32).toString(16).toUpperCase()}`;
}

/** `X/Y` → the 64-bit LSN as a number (exact below 2^53, i.e. 8 PiB of WAL). */
export function lsnToNumber(lsn: string): number {
  const [hi, lo] = lsn.split('/');
  return parseInt(hi!, 16) * 2 ** 32 + parseInt(lo!, 16);
}

/** The LSN one byte before `lsn`, as `X/Y`. */
export function lsnBefore(lsn: string): string {
  const n = Math.max(0, lsnToNumber(lsn) - 1);
  return `${Math.floor(n / 2 ** 32).toString(16).toUpperCase()}/${(n % 2 ** 32).toString(16).toUpperCase()}`;
}

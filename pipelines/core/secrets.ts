/**
 * Secrets scrubbed from text Cellar prints that came from elsewhere: driver errors, Kafka Connect traces,
 * a service's answer. Three kinds are replaced by `***`: the password of any URL
 * (`jdbc:postgresql://user:secret@host`, `redis://:secret@host`), the value of `password=`, `token: …`,
 * `"secret":"…"`-like parameters, and every secret value this process resolved (a supplier's
 * `${ENV}` or `{file}` password, {@link rememberSecret}), also URL-encoded.
 */

/** Values shorter than this are not remembered: they would mask ordinary words (and are weak secrets). */
const MIN_SECRET_LENGTH = 4;

const known = new Set<string>();
let sorted: string[] = [];

/** Remembers a secret value this process resolved, so any text printed later has it masked. */
export function rememberSecret(value: string): void {
  if (value.length < MIN_SECRET_LENGTH || known.has(value)) return;
  known.add(value);
  const encoded = encodeURIComponent(value);
  if (encoded !== value) known.add(encoded);
  sorted = [...known].sort((a, b) => b.length - a.length);
}

/** `scheme://user:secret@` (any scheme, `jdbc:postgresql:` too) → `scheme://user:***@`. */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:(?:[a-z][a-z0-9+.-]*:)?\/\/)([^\s:/@]*):([^\s@/]+)@/gi;

/** `password=x`, `password: x`, `"password":"x"`, `pwd=x`, `token=x`, `api_key=x`, `sasl … password="x"`. */
const PARAMETER = /(["']?)\b(password|passwd|pwd|secret|client[_.-]?secret|token|access[_.-]?token|api[_.-]?key|secret[_.-]?key)\1(\s*[=:]\s*)(["']?)([^\s"'&;,}]+)\4/gi;

/** `text` with every secret this module knows the shape or the value of replaced by `***`. */
export function scrubSecrets(text: string): string {
  let out = text.replace(URL_CREDENTIALS, (_m, scheme: string, user: string) => `${scheme}${user}:***@`);
  out = out.replace(PARAMETER, (_m, q: string, key: string, sep: string, vq: string) => `${q}${key}${q}${sep}${vq}***${vq}`);
  for (const v of sorted) if (out.includes(v)) out = out.split(v).join('***');
  return out;
}

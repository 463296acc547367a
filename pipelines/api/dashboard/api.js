// The read API as the dashboard calls it: the key goes in the Authorization header only (never in a URL),
// and it stays in this tab's session storage.

/** The key of this tab and what the page has learnt about its role. */
export const session = {
  key: sessionStorage.getItem('cellar-key') || '',
  /** 'reader', 'operator' (lists dead letters, cannot replay), 'operator+' (lists them; replay not tried yet), 'admin', or null (not known yet). */
  role: null,
};

/** Keeps `key` for this tab. */
export function setKey(key) {
  session.key = key;
  session.role = null;
  if (key) sessionStorage.setItem('cellar-key', key);
  else sessionStorage.removeItem('cellar-key');
}

/** An answer other than 2xx: its status, code and the API's message. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
  /** A missing, wrong or revoked key. */
  get auth() {
    return this.status === 401;
  }
  /** A key whose role is too low. */
  get forbidden() {
    return this.status === 403;
  }
}

/** Calls the API with the key; JSON in and out. Throws {@link ApiError} for answers other than 2xx. */
export async function api(path, init = {}) {
  const headers = { authorization: `Bearer ${session.key}` };
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method: init.method || 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new ApiError(res.status, body.error?.message || `HTTP ${res.status} for ${path.split('?')[0]}`, body.error?.code);
  }
  return res.json();
}

/** One server-sent event as a client sees it. */
export interface SseMessage {
  id?: string;
  event: string;
  data: string;
}

/** The entries of an event stream as they arrive: each one's id (when it has one), event name and data lines. */
export async function* sseEntries(body: AsyncIterable<Uint8Array>): AsyncGenerator<{ id?: string; event: string; data: string[] }> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const entry: { id?: string; event: string; data: string[] } = { event: 'message', data: [] };
      for (const line of block.split('\n')) {
        if (line.startsWith('id: ')) entry.id = line.slice(4);
        else if (line.startsWith('event: ')) entry.event = line.slice(7);
        else if (line.startsWith('data: ')) entry.data.push(line.slice(6));
      }
      yield entry;
    }
  }
}

/**
 * An EventSource-like client for tests: follows `url` with `Authorization: Bearer <key>`, and when the
 * connection drops (the server killed or restarted) connects again every 250 ms with `Last-Event-ID` set to
 * the last id received, as browsers do. `connections` counts successful connections.
 */
export function followSse(url: string, key: string): { messages: SseMessage[]; connections: () => number; stop: () => Promise<void> } {
  const messages: SseMessage[] = [];
  let lastId: string | undefined;
  let connections = 0;
  let stopped = false;
  let abort = new AbortController();
  const run = (async () => {
    while (!stopped) {
      try {
        const res = await fetch(url, { headers: { authorization: `Bearer ${key}`, ...(lastId ? { 'last-event-id': lastId } : {}) }, signal: abort.signal });
        if (res.status !== 200 || !res.body) throw new Error(`status ${res.status}`);
        connections++;
        for await (const e of sseEntries(res.body as unknown as AsyncIterable<Uint8Array>)) {
          if (e.id !== undefined) lastId = e.id;
          if (e.data.length) messages.push({ ...(e.id !== undefined ? { id: e.id } : {}), event: e.event, data: e.data.join('\n') });
        }
      } catch {
        // connection refused or dropped: reconnect below
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 250));
    }
  })();
  return {
    messages,
    connections: () => connections,
    stop: async () => {
      stopped = true;
      abort.abort();
      abort = new AbortController();
      await run;
    },
  };
}

// Follows GET /v1/events as a fetch stream (EventSource cannot send the Authorization header). The first
// connection asks for a backlog (`?backlog=N`: the newest N stream entries), so the live changes are filled
// at once; a reconnection resumes with Last-Event-ID, so nothing is missed or repeated. Events are handed
// over in batches (everything one network read brought), never painted here: the caller applies them to
// its state and paints once per animation frame.

import { session } from './api.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts following the stream. `onEvents(events)` gets each batch of `stock` events ({region, updatedTsMs,
 * changes}); `onReset()` is called when the API says entries may be missing (reload, then follow);
 * `onState(state)` with 'live', 'reconnecting' or 'refused' (the key was refused: the caller asks for another).
 * Returns a handle whose `stop()` ends it.
 */
export function followStream({ backlog, onEvents, onReset, onState }) {
  let lastEventId = null;
  let ac = null;
  let stopped = false;
  const run = async () => {
    for (let attempt = 0; !stopped; attempt++) {
      ac = new AbortController();
      try {
        const headers = { authorization: `Bearer ${session.key}`, accept: 'text/event-stream' };
        if (lastEventId) headers['last-event-id'] = lastEventId;
        const res = await fetch(lastEventId ? '/v1/events' : `/v1/events?backlog=${backlog}`, { headers, signal: ac.signal });
        if (res.status === 401 || res.status === 403) return onState('refused');
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        onState('live');
        attempt = 0;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          const blocks = buf.split('\n\n');
          buf = blocks.pop();
          let batch = [];
          for (const block of blocks) {
            let event = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('id: ')) lastEventId = line.slice(4);
              else if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (event === 'stock' && data) batch.push(JSON.parse(data));
            else if (event === 'reset') {
              if (batch.length) onEvents(batch);
              batch = [];
              onReset();
            }
          }
          if (batch.length) onEvents(batch);
        }
      } catch {
        if (stopped) return;
      }
      if (stopped) return;
      onState('reconnecting');
      await sleep(Math.min(5000, 250 * 2 ** attempt));
    }
  };
  void run();
  return {
    stop() {
      stopped = true;
      ac?.abort();
    },
  };
}

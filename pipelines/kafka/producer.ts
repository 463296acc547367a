import type { Message, Producer, ProducerRecord, RecordMetadata } from 'kafkajs';

/** One caller's send waiting for the request in flight to finish. */
interface Waiting {
  record: ProducerRecord;
  resolve: (m: RecordMetadata[]) => void;
  reject: (err: unknown) => void;
}

/** The settings a produce request is made with: only sends that agree on them share a request. */
function settingsOf(r: ProducerRecord): string {
  return `${r.acks ?? -1}|${r.timeout ?? ''}|${r.compression ?? ''}`;
}

/**
 * Joins concurrent `send()` calls of one producer into one produce request, as a group commit does: a send
 * made while none is in flight goes out at once; sends made while one is in flight wait for it and then go
 * out together (their messages per topic in call order, so one caller's messages keep their order). Each
 * caller's promise settles with the shared request: resolved once the broker acknowledged every message
 * of it (with the caller's `acks`), rejected with the request's error otherwise, and the caller retries
 * its own messages as before.
 *
 * Why: kafkajs sends every `send()` as a request of its own (it has no linger), and a stage worker handles
 * up to `CELLAR_KAFKA_PARTITIONS_CONCURRENTLY` partition batches at once, each producing its own output.
 * Joined, the output partitions get one record batch per request instead of one per caller: fewer requests
 * for the broker, and larger batches for the next stage's fetches (the test broker returns one produce
 * request's records per partition and fetch). Nothing waits when sends do not overlap.
 */
export class SendCoalescer {
  private inFlight = false;
  private waiting: Waiting[] = [];
  /** Produce requests made, and sends they carried (sends ÷ requests is the joining achieved). */
  readonly stats = { requests: 0, sends: 0 };

  /** `onRequest` is told of every produce request made, with how many sends it carries (metrics). */
  constructor(private readonly producer: Pick<Producer, 'send' | 'sendBatch'>, private readonly onRequest?: (sends: number) => void) {}

  send(record: ProducerRecord): Promise<RecordMetadata[]> {
    return new Promise<RecordMetadata[]>((resolve, reject) => {
      this.waiting.push({ record, resolve, reject });
      if (!this.inFlight) this.flush();
    });
  }

  private flush(): void {
    if (!this.waiting.length) return;
    const key = settingsOf(this.waiting[0]!.record);
    const group: Waiting[] = [];
    const rest: Waiting[] = [];
    for (const w of this.waiting) (settingsOf(w.record) === key ? group : rest).push(w);
    this.waiting = rest;
    this.inFlight = true;
    this.stats.requests++;
    this.stats.sends += group.length;
    this.onRequest?.(group.length);
    const first = group[0]!.record;
    const request = group.length === 1
      ? this.producer.send(first)
      : this.producer.sendBatch({ acks: first.acks, timeout: first.timeout, compression: first.compression, topicMessages: joinByTopic(group.map((w) => w.record)) });
    request.then(
      (meta) => {
        for (const w of group) w.resolve(meta);
      },
      (err: unknown) => {
        for (const w of group) w.reject(err);
      },
    ).finally(() => {
      this.inFlight = false;
      this.flush();
    });
  }
}

/** Records' messages grouped by topic, topics and messages in call order. */
function joinByTopic(records: ProducerRecord[]): Array<{ topic: string; messages: Message[] }> {
  const byTopic = new Map<string, Message[]>();
  for (const r of records) {
    const list = byTopic.get(r.topic);
    if (list) for (const m of r.messages) list.push(m);
    else byTopic.set(r.topic, [...r.messages]);
  }
  return [...byTopic].map(([topic, messages]) => ({ topic, messages }));
}

/**
 * `producer` with its `send()` joined by a {@link SendCoalescer}; every other method is the producer's own.
 * Stage workers produce through it.
 */
export function coalescingProducer(producer: Producer, onRequest?: (sends: number) => void): Producer & { coalescer: SendCoalescer } {
  const coalescer = new SendCoalescer(producer, onRequest);
  const wrapped = Object.create(producer) as Producer & { coalescer: SendCoalescer };
  wrapped.send = (record) => coalescer.send(record);
  wrapped.coalescer = coalescer;
  return wrapped;
}

/** What {@link MessageFlow} needs of its reader. */
export interface MessageFlowHooks<M> {
  /** Handles one message; returns a promise only when it must be waited for (a commit's handler runs). */
  handle(message: M): Promise<void> | undefined;
  /** Stops reading the socket while a handler runs (messages already read still arrive, and queue). */
  pause(): void;
  resume(): void;
  /** True once the reader stopped: queued messages are dropped (the slot delivers them again). */
  stopped(): boolean;
  /** A handler threw or rejected: reported, and the flow goes on with the next message. */
  failed(err: unknown): void;
}

/**
 * Flow control of the Postgres reader: decoded messages are handled one at a time, in stream order. A
 * message whose handling needs no waiting (begin, a row, a relation) is handled as it is decoded, with no
 * promise; while a handler runs (a commit handing its transaction over) later messages queue and the socket
 * is paused, and once it resolves the queue is drained and the socket resumed.
 *
 * It replaces pg-logical-replication's own flow control, which queued every message and awaited it through
 * its event emitter (a promise per listener and per message, and an acknowledgement call each): about a
 * tenth of what the reader allocated per change.
 */
export class MessageFlow<M> {
  private queue: M[] = [];
  private waiting = false;

  constructor(private readonly hooks: MessageFlowHooks<M>) {}

  /** A message decoded from the stream, in stream order. */
  push(message: M): void {
    if (this.waiting) {
      this.queue.push(message);
      return;
    }
    const wait = this.run(message);
    if (!wait) return;
    this.waiting = true;
    this.hooks.pause();
    void wait.then(() => this.drain());
  }

  /** Nothing queued and no handler running. */
  get idle(): boolean {
    return !this.waiting && this.queue.length === 0;
  }

  /** Messages waiting behind a running handler. */
  get queued(): number {
    return this.queue.length;
  }

  /** Handles `message`; a failure is reported, never thrown. Resolves (never rejects) when it must be waited for. */
  private run(message: M): Promise<void> | undefined {
    try {
      return this.hooks.handle(message)?.catch((err: unknown) => this.hooks.failed(err));
    } catch (err) {
      this.hooks.failed(err);
      return undefined;
    }
  }

  private async drain(): Promise<void> {
    for (let i = 0; i < this.queue.length && !this.hooks.stopped(); i++) {
      const wait = this.run(this.queue[i]!);
      if (wait) await wait;
    }
    this.queue = [];
    this.waiting = false;
    if (!this.hooks.stopped()) this.hooks.resume();
  }
}

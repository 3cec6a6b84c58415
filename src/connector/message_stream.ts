/**
 * A queue-backed async iterator: the receive loop pushes, the consumer pulls. Ends quietly on
 * `end()`, rejects with the reason on `fail()`.
 *
 * @module
 */

/** Where a stream tells its owner it went away or drained. */
export interface StreamOwner<T> {
  /** The consumer stopped (return/abort): drop the stream. */
  detach(stream: MessageStream<T>): void;
}

/** One consumer's queue. */
export class MessageStream<T> implements AsyncIterableIterator<T> {
  readonly #queue: T[] = [];
  #head = 0;
  #pull: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | null = null;
  #done = false;
  #error: unknown = undefined;
  #drained: (() => void) | null = null;
  readonly #owner: StreamOwner<T>;
  readonly #signal?: AbortSignal;
  readonly #onAbort = () => this.#stop(this.#signal?.reason);

  constructor(owner: StreamOwner<T>, signal?: AbortSignal) {
    this.#owner = owner;
    this.#signal = signal;
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** Messages waiting to be pulled. */
  get size(): number {
    return this.#queue.length - this.#head;
  }

  /** Adds a message (or hands it straight to a waiting consumer). */
  push(value: T): void {
    if (this.#done) return;
    const pull = this.#pull;
    if (pull) {
      this.#pull = null;
      pull.resolve({ value, done: false });
    } else {
      this.#queue.push(value);
    }
  }

  /** Resolves once the queue has shrunk to `level` or the stream ended. */
  drainedTo(level: number): Promise<void> {
    if (this.#done || this.size <= level) return Promise.resolve();
    return new Promise((resolve) => {
      this.#drained = () => {
        if (this.#done || this.size <= level) {
          this.#drained = null;
          resolve();
        }
      };
    });
  }

  /** Ends the stream: queued messages are still delivered, then `done`; with an error, that error. */
  end(error?: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = error;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    if (this.size === 0) this.#settlePending();
    this.#drained?.();
  }

  #settlePending(): void {
    const pull = this.#pull;
    this.#pull = null;
    if (!pull) return;
    const error = this.#error;
    this.#error = undefined;
    if (error !== undefined) pull.reject(error);
    else pull.resolve({ value: undefined, done: true });
  }

  #stop(error?: unknown): void {
    this.#queue.length = 0;
    this.#head = 0;
    this.end(error);
    this.#owner.detach(this);
  }

  next(): Promise<IteratorResult<T>> {
    if (this.size > 0) {
      const value = this.#queue[this.#head++];
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue.splice(0, this.#head);
        this.#head = 0;
      }
      this.#drained?.();
      return Promise.resolve({ value, done: false });
    }
    if (this.#done) {
      const error = this.#error;
      this.#error = undefined;
      return error !== undefined ? Promise.reject(error) : Promise.resolve({ value: undefined, done: true });
    }
    if (this.#pull) return Promise.reject(new Error("next() called again before the previous call settled"));
    return new Promise((resolve, reject) => {
      this.#pull = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<T>> {
    this.#stop();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

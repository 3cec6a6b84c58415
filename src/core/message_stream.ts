/**
 * A queue-backed async iterator: the receive loop pushes, one consumer pulls. It counts what it
 * holds in messages and in bytes, so the loop can pause when a consumer falls behind. Ends quietly on
 * `end()` and on an abort of its signal (the most common way to stop must not need a try/catch;
 * `signal.aborted` tells why it ended), with the error on `end(error)`.
 *
 * @module
 */

/** Where a stream tells its owner that its consumer stopped (return or abort), and that it is full. */
export interface StreamOwner<T> {
  /** The consumer stopped: drop the stream. */
  detach(stream: MessageStream<T>): void;
  /** A push took the stream to its bound (see {@linkcode MessageStream.bound}). */
  full?(stream: MessageStream<T>): void;
}

/** One consumer's queue. */
export class MessageStream<T> implements AsyncIterableIterator<T> {
  readonly #queue: T[] = [];
  readonly #sizes: number[] = [];
  #head = 0;
  #bytes = 0;
  #pull: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | null = null;
  #done = false;
  #error: unknown = undefined;
  #drained: (() => void) | null = null;
  #maxMessages = Infinity;
  #maxBytes = Infinity;
  readonly #owner: StreamOwner<T>;
  readonly #signal?: AbortSignal;
  readonly #onAbort = () => this.#stop();

  /**
   * @param owner told when the consumer stops
   * @param signal ends the stream (quietly) when aborted
   */
  constructor(owner: StreamOwner<T>, signal?: AbortSignal) {
    this.#owner = owner;
    this.#signal = signal;
    if (signal?.aborted) this.#done = true;
    else signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** Messages waiting to be pulled. */
  get size(): number {
    return this.#queue.length - this.#head;
  }

  /** Bytes of the messages waiting to be pulled (as given to `push`). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether the stream is open and holds as many messages or bytes as its bound allows. */
  get full(): boolean {
    return !this.#done && (this.size >= this.#maxMessages || this.#bytes >= this.#maxBytes);
  }

  /**
   * Bounds the stream: from now on, a push that takes it to `messages` messages or `bytes` bytes
   * tells the owner (`full`). The stream still takes what is pushed; holding back is the owner's job.
   */
  bound(messages: number, bytes: number): void {
    this.#maxMessages = messages;
    this.#maxBytes = bytes;
  }

  /** Whether the stream ended (no more pushes are taken). */
  get done(): boolean {
    return this.#done;
  }

  /** Adds a message of `bytes` bytes (or hands it straight to a waiting consumer). */
  push(value: T, bytes = 0): void {
    if (this.#done) return;
    const pull = this.#pull;
    if (pull) {
      this.#pull = null;
      pull.resolve({ value, done: false });
      return;
    }
    this.#queue.push(value);
    this.#sizes.push(bytes);
    this.#bytes += bytes;
    // Checked here, per push to this stream, rather than by the loop over every stream per datagram.
    if (this.full) this.#owner.full?.(this);
  }

  /** Resolves once the queue holds at most `messages` messages and `bytes` bytes, or the stream ended. */
  drainedTo(messages: number, bytes: number): Promise<void> {
    const ok = () => this.#done || (this.size <= messages && this.#bytes <= bytes);
    if (ok()) return Promise.resolve();
    return new Promise((resolve) => {
      this.#drained = () => {
        if (ok()) {
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
    this.#sizes.length = 0;
    this.#head = 0;
    this.#bytes = 0;
    this.end(error);
    this.#owner.detach(this);
  }

  /** The next message; waits for one, or settles when the stream ends. One call at a time. */
  next(): Promise<IteratorResult<T>> {
    if (this.size > 0) {
      const value = this.#queue[this.#head];
      this.#bytes -= this.#sizes[this.#head];
      this.#head++;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue.splice(0, this.#head);
        this.#sizes.splice(0, this.#head);
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

  /** Stops the stream at once (a `break` calls it): queued messages are dropped, a pending `next()` ends. */
  return(): Promise<IteratorResult<T>> {
    this.#stop();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

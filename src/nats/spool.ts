/**
 * The on-disk spool of the NATS shipper: records that do not fit the in-memory buffer while the
 * server is unreachable, kept in order in segment files (`spool-<n>.log`, one record a line:
 * subject, tab, message id, tab, JSON) and read back oldest first. Bounded in bytes; a segment is
 * deleted once its records are back in memory. Segments left by an earlier run are read first.
 *
 * @module
 */
import { appendFileSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";

/** One record on its way to the stream. */
export interface ShipRecord {
  /** The full subject (`procmon.<host>.<type>`). */
  subject: string;
  /** The message id (`Nats-Msg-Id`): the same event always has the same one. */
  id: string;
  /** The document, JSON on one line. */
  data: string;
}

const SEGMENT_BYTES = 4 << 20;
const encoder = new TextEncoder();

/** The spool files of one directory. */
export class Spool {
  readonly #dir: string;
  readonly #maxBytes: number;
  /** Closed segments, oldest first: [path, bytes, records]. */
  readonly #segments: { path: string; bytes: number; records: number }[] = [];
  /** Lines not yet written (written per tick or when large). */
  #pending: string[] = [];
  #pendingBytes = 0;
  #open: { path: string; bytes: number; records: number } | undefined;
  #next = 0;
  #bytes = 0;
  #records = 0;
  #flushScheduled = false;
  #unreadable = 0;

  constructor(dir: string, maxBytes: number) {
    this.#dir = dir;
    this.#maxBytes = maxBytes;
    mkdirSync(dir, { recursive: true });
    const names = readdirSync(dir).filter((n) => /^spool-\d{12}\.log$/.test(n)).sort();
    for (const name of names) {
      const path = join(dir, name);
      const text = readFileSync(path, "utf8");
      const records = text.split("\n").filter(Boolean).length;
      const bytes = statSync(path).size;
      if (records === 0) {
        unlinkSync(path);
        continue;
      }
      this.#segments.push({ path, bytes, records });
      this.#bytes += bytes;
      this.#records += records;
    }
    this.#next = names.length ? Number(/\d{12}/.exec(names.at(-1)!)![0]) + 1 : 0;
  }

  /** Records on disk (or about to be written). */
  get records(): number {
    return this.#records;
  }

  /** Bytes on disk (or about to be written). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Records read back from disk that could not be parsed (a line cut short by a kill). */
  get unreadable(): number {
    return this.#unreadable;
  }

  /** Appends `record` if it fits the bound; false when it does not (the caller counts it as dropped). */
  add(record: ShipRecord): boolean {
    const line = `${record.subject}\t${record.id}\t${record.data}\n`;
    const size = encoder.encode(line).length;
    if (this.#bytes + size > this.#maxBytes) return false;
    this.#pending.push(line);
    this.#pendingBytes += size;
    this.#bytes += size;
    this.#records++;
    if (this.#pendingBytes >= 256 << 10) this.flush();
    else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setTimeout(() => this.flush(), 0);
    }
    return true;
  }

  /** Writes what is pending to the open segment (a new one when it is full). */
  flush(): void {
    this.#flushScheduled = false;
    if (this.#pending.length === 0) return;
    if (!this.#open || this.#open.bytes >= SEGMENT_BYTES) this.#rotate();
    const open = this.#open!;
    appendFileSync(open.path, this.#pending.join(""));
    open.bytes += this.#pendingBytes;
    open.records += this.#pending.length;
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  #rotate(): void {
    if (this.#open) this.#segments.push(this.#open);
    this.#open = { path: join(this.#dir, `spool-${String(this.#next++).padStart(12, "0")}.log`), bytes: 0, records: 0 };
  }

  /** Takes the oldest segment's records (oldest first) and deletes it; [] when the spool is empty. */
  takeOldest(): ShipRecord[] {
    this.flush();
    if (this.#segments.length === 0 && this.#open && this.#open.records > 0) this.#rotate();
    const segment = this.#segments.shift();
    if (!segment) return [];
    const records: ShipRecord[] = [];
    for (const line of readFileSync(segment.path, "utf8").split("\n")) {
      if (!line) continue;
      const a = line.indexOf("\t");
      const b = line.indexOf("\t", a + 1);
      if (a < 0 || b < 0 || !line.endsWith("}")) continue;
      records.push({ subject: line.slice(0, a), id: line.slice(a + 1, b), data: line.slice(b + 1) });
    }
    unlinkSync(segment.path);
    this.#bytes -= segment.bytes;
    this.#records -= segment.records;
    // A line cut short (the process was killed while writing it) cannot be sent: counted.
    this.#unreadable += segment.records - records.length;
    return records;
  }
}

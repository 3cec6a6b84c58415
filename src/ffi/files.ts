/**
 * The one way the library reads files (/proc, /etc/passwd, /etc/group): a {@linkcode FileReader},
 * given to whatever reads, and by default {@linkcode defaultFileReader}.
 *
 * Through libc: open, read, close into one reused buffer, with no exception for a file that is
 * gone. A process monitor reads /proc while short-lived processes exit; through the runtimes' fs
 * modules a read costs several times more, and a missing file an exception (bench/README.md,
 * "Figures the code cites"); and on Deno the fs module needs --allow-read, which the monitor does not
 * otherwise need. The fs module serves only where libc cannot be loaded.
 *
 * @module
 */
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync } from "node:fs";
import { LITTLE_ENDIAN } from "../codec/netlink.ts";
import { Errno } from "../errors.ts";
import { loadedLibc } from "./load.ts";
import { type Libc, O_DIRECTORY_CLOEXEC, O_RDONLY_CLOEXEC } from "./types.ts";

/** Reads files and links; null when they cannot be read (gone, or not permitted). */
export interface FileReader {
  /**
   * The file's bytes, or its first `limit` bytes when it is longer; the view is valid until the
   * next call.
   */
  read(path: string, limit?: number): Uint8Array | null;
  /** A symbolic link's target, as bytes; the view is valid until the next call. */
  readlink(path: string): Uint8Array | null;
  /** The names in a directory (without `.` and `..`). */
  list(path: string): string[] | null;
}

/** A {@linkcode FileReader} on libc. */
export function libcFileReader(libc: Libc): FileReader {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  let buffer = new Uint8Array(16384);
  const cPath = (path: string) => encoder.encode(path + "\0");
  return {
    read(path, limit = Infinity) {
      const fd = libc.open(cPath(path), O_RDONLY_CLOEXEC);
      if (fd < 0) return null;
      let n = 0;
      try {
        while (n < limit) {
          if (n === buffer.byteLength) {
            const bigger = new Uint8Array(buffer.byteLength * 2);
            bigger.set(buffer);
            buffer = bigger;
          }
          // Never past `limit`: /proc/PID/cmdline can be megabytes, and the kernel copies what is asked.
          const r = libc.read(fd, limit < buffer.byteLength ? buffer.subarray(0, limit) : buffer, n);
          if (r === 0) break;
          if (r === -Errno.EINTR) continue;
          if (r < 0) return null;
          n += r;
        }
      } finally {
        libc.close(fd);
      }
      return buffer.subarray(0, n);
    },
    readlink(path) {
      const r = libc.readlink(cPath(path), buffer);
      return r < 0 ? null : buffer.subarray(0, r);
    },
    list(path) {
      const fd = libc.open(cPath(path), O_DIRECTORY_CLOEXEC);
      if (fd < 0) return null;
      const names: string[] = [];
      const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      try {
        for (;;) {
          const n = libc.getdents64(fd, buffer);
          if (n === 0) break;
          if (n === -Errno.EINTR) continue;
          if (n < 0) return null;
          // struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen @16; u8 d_type @18; char d_name[] @19 }
          for (let at = 0; at < n;) {
            const reclen = view.getUint16(at + 16, LITTLE_ENDIAN);
            const end = buffer.indexOf(0, at + 19);
            const name = decoder.decode(buffer.subarray(at + 19, end < 0 || end > at + reclen ? at + reclen : end));
            if (name !== "." && name !== "..") names.push(name);
            at += reclen;
          }
        }
      } finally {
        libc.close(fd);
      }
      return names;
    },
  };
}

/** A {@linkcode FileReader} on the runtime's fs module, for where libc cannot be loaded. */
export const fsFileReader: FileReader = {
  read(path, limit) {
    try {
      if (limit === undefined) return readFileSync(path);
      const fd = openSync(path, "r");
      try {
        const buffer = new Uint8Array(limit);
        let n = 0;
        for (let r; n < limit && (r = readSync(fd, buffer, n, limit - n, null)) > 0;) n += r;
        return buffer.subarray(0, n);
      } finally {
        closeSync(fd);
      }
    } catch {
      return null;
    }
  },
  readlink(path) {
    try {
      return readlinkSync(path, { encoding: "buffer" });
    } catch {
      return null;
    }
  },
  list(path) {
    try {
      return readdirSync(path);
    } catch {
      return null;
    }
  },
};

let libcReader: { libc: Libc; reader: FileReader } | undefined;

/**
 * The reader used when none is given: on libc once the library has loaded it in this process (any
 * `open()` does, so everything a monitor or procmon reads goes through libc and needs no file
 * permission on Deno), else the runtime's fs module.
 */
export function defaultFileReader(): FileReader {
  const libc = loadedLibc();
  if (!libc) return fsFileReader;
  if (libcReader?.libc !== libc) libcReader = { libc, reader: libcFileReader(libc) };
  return libcReader.reader;
}

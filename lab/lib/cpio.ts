/**
 * A writer for the `newc` cpio format the kernel unpacks as an initramfs
 * (`Documentation/driver-api/early-userspace/buffer-format.rst`): no staging folder, no copies of the
 * 100 MB runtime binaries, and archives that can be concatenated (the kernel unpacks them in order,
 * later entries replacing earlier ones).
 *
 * Each entry: the 6-byte magic `070701`, 13 fields of 8 hex digits (ino, mode, uid, gid, nlink,
 * mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize with its NUL, check), the name
 * and a NUL padded to 4 bytes, then the data padded to 4 bytes. The archive ends with `TRAILER!!!`.
 *
 * @module
 */

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

/** One entry of an archive. Paths are relative to the guest's root, without a leading slash. */
export type CpioEntry =
  | { kind: "dir"; path: string; mode?: number }
  | { kind: "file"; path: string; source: string; mode?: number }
  | { kind: "data"; path: string; data: Uint8Array | string; mode?: number }
  | { kind: "symlink"; path: string; target: string };

const encoder = new TextEncoder();
const pad4 = (n: number) => (4 - (n % 4)) % 4;
const hex = (n: number) => n.toString(16).padStart(8, "0");

function header(ino: number, mode: number, nlink: number, size: number, name: string): Uint8Array {
  const fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, encoder.encode(name).byteLength + 1, 0];
  const text = "070701" + fields.map(hex).join("") + name + "\0";
  const bytes = encoder.encode(text);
  const out = new Uint8Array(bytes.byteLength + pad4(bytes.byteLength));
  out.set(bytes);
  return out;
}

/** Every parent folder of `path`, outermost first ("a/b/c" gives "a", "a/b"). */
function parents(path: string): string[] {
  const parts = path.split("/").slice(0, -1);
  return parts.map((_, i) => parts.slice(0, i + 1).join("/"));
}

/**
 * Writes `entries` as one newc archive to `path`. Missing parent folders are added; a file whose
 * source cannot be read fails the whole write with its path in the message.
 */
export async function writeCpio(path: string, entries: readonly CpioEntry[]): Promise<number> {
  const out = await Deno.open(path, { write: true, create: true, truncate: true });
  let written = 0;
  const write = async (bytes: Uint8Array) => {
    for (let at = 0; at < bytes.byteLength;) at += await out.write(bytes.subarray(at));
    written += bytes.byteLength;
  };
  const seenDirs = new Set<string>();
  let ino = 1;
  try {
    const dir = async (p: string, mode = 0o755) => {
      if (seenDirs.has(p)) return;
      seenDirs.add(p);
      await write(header(ino++, S_IFDIR | mode, 2, 0, p));
    };
    for (const entry of entries) {
      const name = entry.path.replace(/^\/+/, "");
      for (const p of parents(name)) await dir(p);
      switch (entry.kind) {
        case "dir":
          await dir(name, entry.mode);
          break;
        case "symlink": {
          const target = encoder.encode(entry.target);
          await write(header(ino++, S_IFLNK | 0o777, 1, target.byteLength, name));
          await write(target);
          await write(new Uint8Array(pad4(target.byteLength)));
          break;
        }
        case "data": {
          const data = typeof entry.data === "string" ? encoder.encode(entry.data) : entry.data;
          await write(header(ino++, S_IFREG | (entry.mode ?? 0o644), 1, data.byteLength, name));
          await write(data);
          await write(new Uint8Array(pad4(data.byteLength)));
          break;
        }
        case "file": {
          let file: Deno.FsFile;
          try {
            file = await Deno.open(entry.source);
          } catch (cause) {
            throw new Error(`cannot put ${entry.source} into the initramfs: ${(cause as Error).message}`, { cause });
          }
          try {
            const { size, mode } = await file.stat();
            await write(header(ino++, S_IFREG | (entry.mode ?? ((mode ?? 0o644) & 0o777)), 1, size, name));
            let copied = 0;
            const chunk = new Uint8Array(1 << 20);
            for (;;) {
              const n = await file.read(chunk);
              if (n === null) break;
              await write(chunk.subarray(0, n));
              copied += n;
            }
            if (copied !== size) throw new Error(`${entry.source} changed size while being archived`);
            await write(new Uint8Array(pad4(size)));
          } finally {
            file.close();
          }
          break;
        }
      }
    }
    await write(header(ino++, 0, 1, 0, "TRAILER!!!"));
  } finally {
    out.close();
  }
  return written;
}

/**
 * procmon: a live process monitor on the kernel's process-events connector, as a CLI.
 *
 *   sudo deno run -A cli/procmon.ts [-e exec,exit] [-D 10] [-S] [--json] [--tree]
 *   sudo bun cli/procmon.ts --help
 *   sudo deno run -A jsr:@cnlink/connector/procmon
 *
 * Importing this module does not start it; `main(args)` runs it.
 *
 * @example Run it from a script
 * ```ts ignore
 * import { main } from "@cnlink/connector/procmon";
 *
 * await main(["--json", "-D", "5"]);
 * ```
 *
 * @module
 */
import process from "node:process";
import { HELP, main } from "../src/procmon/cli.ts";

export { HELP, main };

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));

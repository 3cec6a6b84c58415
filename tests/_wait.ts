/** Waiting for a condition in tests, instead of sleep-polling loops written out each time. */

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Resolves once `condition()` holds (checked every `everyMs`), or throws after `timeoutMs` saying
 * `what` did not happen. Returns what the condition returned.
 */
export async function waitFor<T>(
  condition: () => T | undefined | false | null,
  what: string,
  options: { timeoutMs?: number; everyMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 5000);
  for (;;) {
    const value = condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${options.timeoutMs ?? 5000} ms waiting for ${what}`);
    await sleep(options.everyMs ?? 10);
  }
}

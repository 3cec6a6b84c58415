/**
 * Counting the leaf tests of a JUnit report, as `deno test --junit-path` and
 * `bun test --reporter=junit` write them. Used by the test runner and by the kernel lab.
 *
 * @module
 */

/** One test case of a report. */
export interface TestCase {
  /** The test's name ("block > step" for Deno's nested steps). */
  name: string;
  /** The file or suite it belongs to. */
  classname: string;
  /** It failed (a `<failure>` or `<error>` element). */
  failed: boolean;
  /** It was skipped. */
  skipped: boolean;
  /** The failure text, when it failed. */
  message?: string;
}

/** Leaf tests of one report by outcome. */
export interface Counts {
  passed: number;
  failed: TestCase[];
  skipped: TestCase[];
}

function unescape(s: string): string {
  return s.replace(/&gt;/g, ">").replace(/&lt;/g, "<").replace(/&quot;/g, '"').replace(/&apos;/g, "'")
    .replace(/&#10;/g, "\n").replace(/&amp;/g, "&");
}

/** Every test case of a JUnit XML report. */
export function testCases(xml: string): TestCase[] {
  const cases: TestCase[] = [];
  const re = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const m of xml.matchAll(re)) {
    const attr = (name: string) => unescape(new RegExp(`\\b${name}="([^"]*)"`).exec(m[1])?.[1] ?? "");
    const body = m[3] ?? "";
    const failure = /<(failure|error)\b([^>]*?)(?:\/>|>([\s\S]*?)<\/\1>)/.exec(body);
    cases.push({
      name: attr("name"),
      classname: attr("classname"),
      failed: failure !== null,
      skipped: /<skipped/.test(body),
      message: failure
        ? unescape(failure[3] ?? /\bmessage="([^"]*)"/.exec(failure[2])?.[1] ?? "").trim().slice(0, 2000)
        : undefined,
    });
  }
  return cases;
}

/**
 * Counts the leaf tests of a report. Deno reports a `describe` block as a test case too and its
 * steps as "block > step": only leaves count.
 */
export function countLeaves(xml: string): Counts {
  const cases = testCases(xml);
  const names = cases.map((c) => c.name);
  const leaves = cases.filter((c) => !names.some((n) => n.startsWith(`${c.name} > `)));
  return {
    passed: leaves.filter((c) => !c.failed && !c.skipped).length,
    failed: leaves.filter((c) => c.failed),
    skipped: leaves.filter((c) => c.skipped),
  };
}

/**
 * docs/sessions-checklist.md names the tests that cover each checklist item: every name it cites
 * must be a test (or suite) in the file it points to, and every item C.1-C.36 must have a row.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const SUITES: Record<string, string> = {
  manager: 'test/sessions/manager.test.ts',
  layout: 'test/sessions/manager.test.ts',
  http: 'test/sessions/http.test.ts',
  outage: 'test/sessions/outage.test.ts',
  units: 'test/sessions/units.test.ts',
  'cross-process': 'test/sessions/cross-process.test.ts',
  cluster: 'test/sessions/cluster.test.ts',
};

const doc = readFileSync('docs/sessions-checklist.md', 'utf8');

/** `suite › "name"`, `demo › \`file\` › "name"` and `\`file\` › "suite" › "name"` references. */
function references(): { file: string; name: string }[] {
  const found: { file: string; name: string }[] = [];
  const pattern =
    /(manager|layout|http|outage|units|cross-process|cluster|demo|`(test\/[^`]+)`)((?: › `test\/[^`]+`)?(?: › "[^"]+")+)/g;
  for (const match of doc.matchAll(pattern)) {
    const inner = /^ › `(test\/[^`]+)`/.exec(match[3]!);
    const file = inner?.[1] ?? match[2] ?? SUITES[match[1]!];
    for (const [, name] of match[3]!.matchAll(/"([^"]+)"/g)) found.push({ file: file!, name: name! });
  }
  return found;
}

describe('docs/sessions-checklist.md', () => {
  it('every test it names exists, in the file it names', () => {
    const refs = references();
    expect(refs.length).toBeGreaterThan(100);
    const missing = refs.filter(({ file, name }) => {
      const source = readFileSync(file, 'utf8');
      return !["'", '"', '`'].some((quote) => source.includes(`${quote}${name}${quote}`));
    });
    expect(missing).toEqual([]);
  });

  it('has a row for every checklist item C.1-C.36 and every attack of C.11', () => {
    const rows = new Set([...doc.matchAll(/^\| (C\.\d+) \|/gm)].map((m) => m[1]));
    expect(Array.from({ length: 36 }, (_, i) => `C.${i + 1}`).filter((item) => !rows.has(item))).toEqual([]);
    const attacks = [
      'Session fixation',
      'Token guessing',
      'Timing attack on lookup',
      'Cookie tossing / shadowing',
      'Replay after logout',
      'Replay after rotation',
      'Resurrection race',
      'Oversized / malformed cookies',
      'Header injection',
      'Redis key / pattern injection',
      'CSRF',
      'Store outage',
      'TTL drift',
      'Concurrent-login limit race',
    ];
    expect(attacks.filter((attack) => !doc.includes(`\n| ${attack} |`))).toEqual([]);
  });
});

/**
 * A small parser of the Prometheus text exposition format (0.0.4) and OpenMetrics text, strict
 * enough to catch malformed output: every sample belongs to a family announced by `# TYPE`,
 * label values are unescaped, values are numbers.
 */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  readonly type: string;
  readonly help: string;
  readonly samples: Sample[];
}

const SUFFIXES: Record<string, readonly string[]> = {
  counter: ['', '_total', '_created'],
  gauge: [''],
  histogram: ['_bucket', '_sum', '_count', '_created'],
  summary: ['', '_sum', '_count'],
  info: ['_info'],
  untyped: [''],
  unknown: [''],
};

function parseValue(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN' || text === 'Nan') return NaN;
  const parsed = Number(text);
  if (text.trim() === '' || Number.isNaN(parsed)) throw new Error(`not a number: ${text}`);
  return parsed;
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new Error(`bad labels in: ${line}`);
    const name = text.slice(i, eq).trim();
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) throw new Error(`bad label name "${name}" in: ${line}`);
    if (text[eq + 1] !== '"') throw new Error(`unquoted label value in: ${line}`);
    let labelValue = '';
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === '\\') {
        const next = text[++j];
        labelValue += next === 'n' ? '\n' : next;
      } else labelValue += text[j];
    }
    if (j >= text.length) throw new Error(`unterminated label value in: ${line}`);
    if (name in labels) throw new Error(`duplicate label ${name} in: ${line}`);
    labels[name] = labelValue;
    i = j + 1;
    if (text[i] === ',') i++;
  }
  return labels;
}

/** Families by name, in order. Throws on anything malformed. */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  let current: Family | undefined;
  const helps = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line === '# EOF') continue;
    if (line.startsWith('# HELP ')) {
      const rest = line.slice(7);
      const space = rest.indexOf(' ');
      helps.set(rest.slice(0, space), rest.slice(space + 1));
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ') as [string, string];
      if (families.has(name)) throw new Error(`family ${name} announced twice`);
      if (!(type in SUFFIXES)) throw new Error(`unknown type ${type}`);
      current = { name, type, help: helps.get(name) ?? '', samples: [] };
      families.set(name, current);
      continue;
    }
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \S+)?$/.exec(line);
    if (match === null) throw new Error(`malformed sample: ${line}`);
    const [, name, labels, raw] = match as unknown as [string, string, string | undefined, string];
    if (current === undefined) throw new Error(`sample before any # TYPE: ${line}`);
    const suffix = name.slice(current.name.length);
    if (!name.startsWith(current.name) || !SUFFIXES[current.type]!.includes(suffix)) {
      throw new Error(`sample ${name} does not belong to family ${current.name} (${current.type})`);
    }
    current.samples.push({ name, labels: labels === undefined ? {} : parseLabels(labels, line), value: parseValue(raw) });
  }
  return families;
}

/** The samples of `family` named `name` whose labels include `labels`. */
export function samples(
  families: Map<string, Family>,
  family: string,
  labels: Record<string, string> = {},
  name = family,
): Sample[] {
  const f = families.get(family);
  if (f === undefined) throw new Error(`no family ${family}`);
  return f.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The one sample of `family` with exactly `labels`. */
export function sampleValue(
  families: Map<string, Family>,
  family: string,
  labels: Record<string, string>,
  name = family,
): number {
  const found = samples(families, family, labels, name).filter(
    (s) => Object.keys(s.labels).filter((k) => k !== 'le').length === Object.keys(labels).length,
  );
  if (found.length !== 1) {
    throw new Error(`expected one ${name}${JSON.stringify(labels)}, found ${found.length}`);
  }
  return found[0]!.value;
}

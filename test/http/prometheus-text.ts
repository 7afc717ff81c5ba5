/**
 * A strict parser of the Prometheus text exposition format (0.0.4), for tests:
 * it throws on anything a scraper could choke on or misread — a malformed
 * line, a name or label that is not allowed, a bad escape, a value that is no
 * number, a TYPE after its samples or twice, a family's samples not together,
 * a series given twice, a histogram without its +Inf bucket or whose count
 * differs from it, buckets that decrease.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: MetricType;
  help?: string;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<MetricType>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seriesSeen = new Set<string>();
  const closed = new Set<string>(); // families whose samples are over (another family's came after)
  let current: string | undefined;
  const lines = text.split('\n');
  if (lines[lines.length - 1] !== '') throw new Error('the exposition must end with a newline');
  lines.pop();
  lines.forEach((line, i) => {
    const at = `line ${i + 1}: ${JSON.stringify(line.slice(0, 200))}`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([^ ]+) ?(.*)$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`${at}: bad metric name`);
      let f = families.get(name);
      if (kind === 'TYPE') {
        if (!TYPES.has(rest as MetricType)) throw new Error(`${at}: unknown type`);
        if (f?.samples.length) throw new Error(`${at}: TYPE after samples`);
        if (f && f.type !== 'untyped') throw new Error(`${at}: second TYPE`);
        if (!f) families.set(name, (f = { name, type: 'untyped', samples: [] }));
        f.type = rest as MetricType;
      } else {
        if (f?.help !== undefined) throw new Error(`${at}: second HELP`);
        if (!f) families.set(name, (f = { name, type: 'untyped', samples: [] }));
        f.help = unescape(rest, false, at);
      }
      return;
    }
    const s = parseSample(line, at);
    const family = familyOf(s.name, families);
    if (current !== family.name) {
      if (closed.has(family.name)) throw new Error(`${at}: samples of ${family.name} are not together`);
      if (current) closed.add(current);
      current = family.name;
    }
    const key = s.name + JSON.stringify(Object.entries(s.labels).sort());
    if (seriesSeen.has(key)) throw new Error(`${at}: series given twice`);
    seriesSeen.add(key);
    family.samples.push(s);
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

function parseSample(line: string, at: string): Sample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{)?/.exec(line);
  if (!m) throw new Error(`${at}: no metric name`);
  const name = m[1]!;
  let i = name.length;
  const labels: Record<string, string> = {};
  if (m[2]) {
    i++;
    for (;;) {
      if (line[i] === '}') {
        i++;
        break;
      }
      const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(i));
      if (!lm) throw new Error(`${at}: bad label at ${i}`);
      const label = lm[1]!;
      if (!LABEL_NAME.test(label) || label.startsWith('__')) throw new Error(`${at}: bad label name ${label}`);
      if (label in labels) throw new Error(`${at}: label ${label} twice`);
      i += lm[0].length;
      let raw = '';
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\') {
          raw += line.slice(i, i + 2);
          i += 2;
        } else raw += line[i++];
      }
      if (line[i] !== '"') throw new Error(`${at}: unterminated label value`);
      i++;
      labels[label] = unescape(raw, true, at);
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new Error(`${at}: expected , or } at ${i}`);
    }
  }
  const rest = line.slice(i);
  const vm = /^ ([^ ]+)( -?[0-9]+)?$/.exec(rest);
  if (!vm) throw new Error(`${at}: expected " value [timestamp]"`);
  return { name, labels, value: parseValue(vm[1]!, at) };
}

function parseValue(v: string, at: string): number {
  if (v === '+Inf' || v === 'Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  if (v === 'NaN') return NaN;
  if (!/^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$/.test(v)) throw new Error(`${at}: bad value ${v}`);
  return Number(v);
}

function unescape(s: string, quoted: boolean, at: string): string {
  return s.replace(/\\(.?)/g, (_m, c: string) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    if (c === '"' && quoted) return '"';
    throw new Error(`${at}: bad escape \\${c}`);
  });
}

function familyOf(sample: string, families: Map<string, Family>): Family {
  const exact = families.get(sample);
  if (exact) return exact;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sample.endsWith(suffix)) continue;
    const f = families.get(sample.slice(0, -suffix.length));
    if (f && (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket'))) return f;
  }
  const f: Family = { name: sample, type: 'untyped', samples: [] };
  families.set(sample, f);
  return f;
}

function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: Array<[number, number]>; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    let h = series.get(key);
    if (!h) series.set(key, (h = { buckets: [] }));
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${f.name}: bucket without le`);
      h.buckets.push([parseValue(le, f.name), s.value]);
    } else if (s.name === `${f.name}_count`) h.count = s.value;
  }
  for (const [key, h] of series) {
    const sorted = [...h.buckets].sort((a, b) => a[0] - b[0]);
    if (sorted.length === 0 || sorted[sorted.length - 1]![0] !== Infinity) throw new Error(`${f.name}${key}: no +Inf bucket`);
    for (let i = 1; i < sorted.length; i++) if (sorted[i]![1] < sorted[i - 1]![1]) throw new Error(`${f.name}${key}: buckets decrease`);
    if (h.count !== sorted[sorted.length - 1]![1]) throw new Error(`${f.name}${key}: _count ${h.count} differs from the +Inf bucket`);
  }
}

/** The value of one series (labels given exactly), or undefined. */
export function valueOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  for (const f of families.values()) for (const s of f.samples) if (s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want) return s.value;
  return undefined;
}

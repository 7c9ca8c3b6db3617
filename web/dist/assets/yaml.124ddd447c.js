// toYAML writes a JSON value as YAML so jobs and schedules can be edited in
// the form operators write them (the API accepts YAML back). Multi-line
// strings such as scripts become block literals.

const RESERVED = /^(true|false|yes|no|on|off|null|~|y|n)$/i;
const NUMBERISH = /^[-+.]?(\d|\.\d|0x|0o|\.inf|\.nan)/i;
const PLAIN = /^[A-Za-z0-9_/][^:#]*$/;

function scalar(s) {
  if (s === '' || RESERVED.test(s) || NUMBERISH.test(s) || !PLAIN.test(s) || /\s$/.test(s) || /[\n\r\t"'`{}[\],&*!|>%@]/.test(s)) {
    return JSON.stringify(s);
  }
  return s;
}

function isBlockable(s) {
  return s.includes('\n') && !s.includes('\r') && !/^[ \t]/.test(s) && !/[ \t]$/m.test(s.replace(/\n+$/, ''));
}

function block(s, indent) {
  const pad = '  '.repeat(indent);
  let chomp = '-';
  let body = s;
  if (/\n\n+$/.test(s)) {
    chomp = '+';
    body = s.slice(0, -1);
  } else if (s.endsWith('\n')) {
    chomp = '';
    body = s.slice(0, -1);
  }
  return `|${chomp}\n` + body.split('\n').map((l) => (l === '' ? '' : pad + l)).join('\n');
}

function value(v, indent) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean' || typeof v === 'number') return String(v);
  if (typeof v === 'string') return isBlockable(v) ? block(v, indent + 1) : scalar(v);
  return null; // a collection: the caller writes it on the following lines
}

function lines(v, indent) {
  const pad = '  '.repeat(indent);
  const out = [];
  if (Array.isArray(v)) {
    for (const item of v) {
      const s = value(item, indent);
      if (s !== null) out.push(`${pad}- ${s}`);
      else if (isEmpty(item)) out.push(`${pad}- ${Array.isArray(item) ? '[]' : '{}'}`);
      else {
        const inner = lines(item, indent + 1);
        out.push(`${pad}- ${inner[0].trimStart()}`, ...inner.slice(1));
      }
    }
    return out;
  }
  for (const [k, item] of Object.entries(v)) {
    const key = scalar(k);
    const s = value(item, indent);
    if (s !== null) out.push(`${pad}${key}: ${s}`);
    else if (isEmpty(item)) out.push(`${pad}${key}: ${Array.isArray(item) ? '[]' : '{}'}`);
    else out.push(`${pad}${key}:`, ...lines(item, indent + 1));
  }
  return out;
}

function isEmpty(v) {
  return Array.isArray(v) ? v.length === 0 : Object.keys(v).length === 0;
}

export function toYAML(v) {
  const s = value(v, -1);
  if (s !== null) return s + '\n';
  if (isEmpty(v)) return (Array.isArray(v) ? '[]' : '{}') + '\n';
  return lines(v, 0).join('\n') + '\n';
}

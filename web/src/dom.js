// Building DOM without a framework: h() makes an element, text is always set
// as text (never parsed as HTML), so data from the API cannot inject markup.

const PROPS = new Set(['value', 'checked', 'selected', 'disabled', 'hidden', 'open']);

// h('a', {href: '#/', class: 'x', testid: 'y', onclick: fn}, 'text', child, [more])
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'testid') el.dataset.testid = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (PROPS.has(k)) el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// replace swaps all children of el for the given ones in one step, so the
// page never shows an empty intermediate state.
export function replace(el, ...children) {
  el.replaceChildren(...append(document.createDocumentFragment(), children).childNodes);
  return el;
}

export function byTestId(root, id) {
  return root.querySelector(`[data-testid="${id}"]`);
}

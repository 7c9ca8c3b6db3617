// The theme toggle: auto (the system's prefers-color-scheme), light or dark.
// The choice is kept in this browser; theme-init.js applies it before paint.

const KEY = 'kanade.theme';
const ORDER = ['auto', 'light', 'dark'];
const LABEL = { auto: '◐ Auto', light: '☀ Light', dark: '☾ Dark' };

function current() {
  const t = document.documentElement.dataset.theme;
  return t === 'light' || t === 'dark' ? t : 'auto';
}

export function initThemeToggle(button) {
  const render = () => {
    const t = current();
    button.textContent = LABEL[t];
    button.dataset.theme = t;
    button.setAttribute('aria-label', `Theme: ${t === 'auto' ? 'automatic, follows the system' : t}. Change theme`);
  };
  button.addEventListener('click', () => {
    const next = ORDER[(ORDER.indexOf(current()) + 1) % ORDER.length];
    if (next === 'auto') {
      delete document.documentElement.dataset.theme;
      localStorage.removeItem(KEY);
    } else {
      document.documentElement.dataset.theme = next;
      localStorage.setItem(KEY, next);
    }
    render();
  });
  render();
}

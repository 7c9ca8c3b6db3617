// Runs before the first paint (a blocking classic script in <head>), so a
// stored theme choice never flashes the other theme first.
(function () {
  try {
    var t = localStorage.getItem('kanade.theme');
    if (t === 'light' || t === 'dark') document.documentElement.dataset.theme = t;
  } catch (e) {
    // Storage blocked: the system preference applies.
  }
})();

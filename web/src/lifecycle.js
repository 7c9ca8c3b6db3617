// Every timer and request a page starts belongs to its Lifecycle; leaving the
// page disposes it, which stops the timers and aborts requests in flight.

export class Lifecycle {
  constructor() {
    this.ctrl = new AbortController();
    this.timers = new Set();
  }

  get signal() {
    return this.ctrl.signal;
  }

  get disposed() {
    return this.ctrl.signal.aborted;
  }

  // after runs fn once in ms, unless the page is gone first; returns a cancel.
  after(ms, fn) {
    if (this.disposed) return () => {};
    const id = setTimeout(() => {
      this.timers.delete(cancel);
      fn();
    }, ms);
    const cancel = () => {
      clearTimeout(id);
      this.timers.delete(cancel);
    };
    this.timers.add(cancel);
    return cancel;
  }

  every(ms, fn) {
    if (this.disposed) return () => {};
    const id = setInterval(fn, ms);
    const cancel = () => {
      clearInterval(id);
      this.timers.delete(cancel);
    };
    this.timers.add(cancel);
    return cancel;
  }

  dispose() {
    this.ctrl.abort();
    for (const cancel of [...this.timers]) cancel();
  }
}

// Latest runs async loads so that only the newest one's result is used: an
// older, slower answer never overwrites a newer view.
export class Latest {
  constructor(life) {
    this.life = life;
    this.ctrl = null;
  }

  // run(fn) calls fn(signal); resolves {ok, value} or {ok: false, error}, or
  // null when superseded or the page is gone.
  async run(fn) {
    if (this.ctrl) this.ctrl.abort();
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    const onDispose = () => ctrl.abort();
    this.life.signal.addEventListener('abort', onDispose, { once: true });
    try {
      const value = await fn(ctrl.signal);
      return ctrl.signal.aborted ? null : { ok: true, value };
    } catch (error) {
      return ctrl.signal.aborted ? null : { ok: false, error };
    } finally {
      this.life.signal.removeEventListener('abort', onDispose);
      if (this.ctrl === ctrl) this.ctrl = null;
    }
  }
}

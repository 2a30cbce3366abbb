/**
 * Diagnostics and progress go to stderr; stdout is reserved for results (and for the one JSON
 * document of --json). Progress bars only draw on a terminal, so CI logs stay clean.
 */
const useColor = (): boolean => process.stderr.isTTY === true && !('NO_COLOR' in process.env);
const paint = (code: string, text: string): string => (useColor() ? `\x1b[${code}m${text}\x1b[0m` : text);

let verbose = process.env.SWARMCARD_VERBOSE === '1';
export function setVerbose(on: boolean): void {
  verbose = on;
}

/** After an interrupt's one line, the unwinding main path prints nothing but warnings. */
let muted = false;

export const log = {
  /** Silence progress, info, steps and errors (an interrupt's unwinding is not news). */
  mute(): void {
    muted = true;
  },
  info(message: string): void {
    if (!muted) process.stderr.write(`${message}\n`);
  },
  step(message: string): void {
    if (!muted) process.stderr.write(`${paint('1', '==>')} ${message}\n`);
  },
  warn(message: string): void {
    process.stderr.write(`${paint('33', 'warning:')} ${message}\n`);
  },
  error(message: string): void {
    if (!muted) process.stderr.write(`${paint('31', 'error:')} ${message}\n`);
  },
  debug(message: string): void {
    if (verbose) process.stderr.write(`${paint('2', message)}\n`);
  },
};

export interface Progress {
  update(done: number): void;
  done(): void;
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** Seconds as m:ss (or h:mm:ss). */
function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const hms = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60];
  const [h, m, sec] = hms.map((n) => String(n).padStart(2, '0'));
  return s >= 3600 ? `${Number(h)}:${m}:${sec}` : `${Number(m)}:${sec}`;
}

/**
 * A byte-count progress line on stderr, redrawn at most 10 times a second. Quiet when stderr is
 * not a terminal, except for one line when the work ends so logs still show what happened.
 * With `eta`, a known total also shows the time left at the current rate (and the time taken at the end).
 */
export function progress(label: string, total: number | undefined, options: { eta?: boolean } = {}): Progress {
  const tty = process.stderr.isTTY === true;
  const started = Date.now();
  let last = 0;
  const line = (done: number): string => {
    const pct = total ? ` ${((100 * done) / total).toFixed(0).padStart(3)}%` : '';
    const seconds = Math.max((Date.now() - started) / 1000, 0.001);
    const of = total ? ` of ${formatBytes(total)}` : '';
    const rate = done / seconds;
    let eta = '';
    if (options.eta && total)
      eta = done >= total ? `, ${clock(seconds)}` : rate > 0 ? `, ${clock((total - done) / rate)} left` : '';
    return `${label}${pct} ${formatBytes(done)}${of} (${formatBytes(rate)}/s${eta})`;
  };
  let current = 0;
  return {
    update(done: number) {
      current = done;
      if (!tty || muted) return;
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      process.stderr.write(`\r\x1b[K${line(done)}`);
    },
    done() {
      if (muted) return;
      if (tty) process.stderr.write(`\r\x1b[K`);
      process.stderr.write(`${line(total ?? current)}\n`);
    },
  };
}

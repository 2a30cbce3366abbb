/** A counting semaphore: at most `free` holders at once, the others wait in order. */
export class Gate {
  private readonly queue: (() => void)[] = [];
  constructor(private free: number) {}
  async enter(): Promise<void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.queue.push(resolve));
  }
  leave(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.free++;
  }
}

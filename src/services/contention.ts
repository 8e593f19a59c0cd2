/**
 * How contenders for one pool stop colliding. Pure, so the spread can be tested.
 *
 * Every host walks the pool round robin from its own hint; processes on one host share the hint (they mark
 * the address each is claiming, so they never race each other), and hosts that start at the same moment
 * often reach the same next free address. The first try takes the first free candidate (plain round robin,
 * as host-local does). After each lost `cas=0` write a contender jumps a random distance ahead of its hint
 * (up to 32, 64, 128, ... candidates), picks at random among the free candidates it finds there, and waits a
 * jittered, growing delay: the contenders of a storm scatter over a range that doubles each round instead of
 * fighting over the same few addresses again.
 */

/** Index of the free candidate to try, given how many writes this invocation has lost so far. */
export function spreadIndex(freeCount: number, lost: number, random: () => number = Math.random): number {
  if (freeCount <= 1 || lost === 0) return 0;
  const window = Math.min(freeCount, 2 ** (lost + 2));
  return Math.floor(random() * window);
}

/** Milliseconds to wait after the `lost`-th lost write: random in [0, 5·2^lost), at most 250. */
export function backoffDelay(lost: number, random: () => number = Math.random): number {
  return Math.floor(random() * Math.min(250, 5 * 2 ** lost));
}

/** How many candidates to skip past the hint before looking, given the writes lost so far: 0 on the first try. */
export function jumpAhead(lost: number, random: () => number = Math.random, windowSize = 32): number {
  if (lost === 0) return 0;
  return Math.floor(random() * Math.min(4096, windowSize * 2 ** (lost - 1)));
}

/**
 * A member's incarnation: new at every process start, so a restarted process is a new member (it joins as the
 * youngest and never gets its old seniority or leadership back). `<generation>-<8 hex digits>`: the generation is
 * the previous incarnation's (from the persisted state) plus one, and the random part keeps a member whose state
 * was lost (a new volume) from repeating an incarnation the others may still know.
 */
export function nextIncarnation (previous: string | undefined, random: () => number): string {
  const m = previous === undefined ? null : /^(\d+)-/.exec(previous)
  const generation = m === null ? 1 : Number(m[1]) + 1
  const bits = Math.floor(random() * 0x1_0000_0000).toString(16).padStart(8, '0')
  return `${generation}-${bits}`
}

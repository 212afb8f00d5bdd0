/**
 * Runs many seeded simulation schedules of the membership/leadership machine and prints JSON then a table.
 *
 *   npx tsx bench/sim.ts [--count 2000] [--start 1] [--nodes 3,5] [--quorum majority] [--profile mixed,storm,...]
 *   npx tsx bench/sim.ts --replay --seed S --nodes N --quorum Q --profile P [--messages]   (one schedule with its trace)
 *   npx tsx bench/sim.ts --scenarios [--count 100]   (failover times of scripted leader faults, simulated time)
 *   npx tsx bench/sim.ts --digests --check|--write [--count 1200]   (trace digests against test/fixtures/sim-digests.json)
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { PROFILES, Simulation, SimulationFailure, profileOptions, type ScriptedFault, type SimResult } from '../test/helpers/sim/simulation.js'
import { DIGESTS_FILE, digestSchedule, runDigest } from '../test/helpers/sim/digest-schedule.js'

function arg (name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

const replay = process.argv.includes('--replay')
const quorum = (arg('quorum') ?? 'majority') as 'majority' | 'none'
if (quorum !== 'majority' && quorum !== 'none') throw new RangeError('--quorum must be majority or none')

if (process.argv.includes('--digests')) {
  // The behaviour of the machine, seed by seed: a refactoring must keep every digest (docs/cluster-protocol.md,
  // "Changing the machine"); a change of behaviour rewrites the file and says in its commit which seeds changed and why.
  const schedule = digestSchedule(Number(arg('count') ?? 1200))
  const t0 = performance.now()
  const got: Record<string, string> = {}
  for (const entry of schedule) got[entry.key] = runDigest(entry)
  const ms = Math.round(performance.now() - t0)
  if (process.argv.includes('--write')) {
    writeFileSync(DIGESTS_FILE, `{\n${Object.entries(got).map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(',\n')}\n}\n`)
    console.log(JSON.stringify({ written: DIGESTS_FILE, runs: schedule.length, wallMs: ms }))
  } else {
    const want = JSON.parse(readFileSync(DIGESTS_FILE, 'utf8')) as Record<string, string>
    const changed = Object.keys(got).filter((k) => want[k] !== got[k])
    // Changed/all runs per profile (the key's third part: scripted runs count apart, e.g. `script:crash-leader+facts`).
    const counts: Record<string, { changed: number, runs: number }> = {}
    for (const k of Object.keys(got)) {
      const c = counts[k.split('/')[2]!] ??= { changed: 0, runs: 0 }
      c.runs++
      if (want[k] !== got[k]) c.changed++
    }
    const changedByProfile = Object.fromEntries(Object.entries(counts).map(([p, c]) => [p, `${c.changed}/${c.runs}`]))
    console.log(JSON.stringify({ runs: schedule.length, changed: changed.length, wallMs: ms, changedByProfile, firstChanged: changed.slice(0, 20) }))
    for (const k of changed.slice(0, 20)) console.log(`${k.padEnd(32)} want ${want[k] ?? '-'}  got ${got[k]}`)
    console.log(`${schedule.length} runs, ${changed.length} changed, ${(ms / 1000).toFixed(1)} s`)
    if (changed.length > 0) process.exitCode = 1
  }
} else if (process.argv.includes('--scenarios')) {
  // Failover times in simulated time with the default constants (3 members): the fault hits the leader at 3 s.
  const runs = Number(arg('count') ?? 100)
  const scenarios: Array<{ name: string, script: ScriptedFault[], facts?: boolean }> = [
    { name: 'crash, outside death fact', script: [{ at: 3000, action: 'crash-leader' }], facts: true },
    { name: 'crash, refused connections', script: [{ at: 3000, action: 'crash-leader' }] },
    { name: 'pause 8 s', script: [{ at: 3000, action: 'pause-leader', ms: 8000 }] },
    { name: 'drop partition 8 s', script: [{ at: 3000, action: 'partition-leader', ms: 8000, kind: 'drop' }] },
    { name: 'graceful leave', script: [{ at: 3000, action: 'leave-leader' }] },
    { name: 'transfer', script: [{ at: 3000, action: 'transfer' }] }
  ]
  const out: Record<string, { p50: number, p99: number, max: number, runs: number }> = {}
  for (const sc of scenarios) {
    const times: number[] = []
    for (let seed = 1; seed <= runs; seed++) {
      const r = new Simulation({ seed, nodes: 3, faultMs: 0, settleBoundMs: 15_000, outsideDeathFacts: sc.facts ?? false, script: sc.script }).run()
      const first = r.elections.find(e => e.at >= 3000)
      if (first !== undefined) times.push(first.at - 3000)
    }
    times.sort((a, b) => a - b)
    out[sc.name] = { p50: Math.round(times[Math.floor(times.length / 2)] ?? -1), p99: Math.round(times[Math.floor(times.length * 0.99)] ?? -1), max: Math.round(times[times.length - 1] ?? -1), runs: times.length }
  }
  // A member (not the leader) killed: time until one view of the live members (and the leader) again.
  for (const facts of [true, false]) {
    const times: number[] = []
    for (let seed = 1; seed <= runs; seed++) {
      const r = new Simulation({ seed, nodes: 3, faultMs: 3001, faultEveryMs: 1e9, permanentlyDead: 1, settleBoundMs: 15_000, outsideDeathFacts: facts, script: [{ at: 3000, action: 'crash-member' }] }).run()
      times.push(r.convergeMs + 1)
    }
    times.sort((a, b) => a - b)
    out[`member crash → excluded${facts ? ', death fact' : ', refused'}`] = { p50: Math.round(times[Math.floor(times.length / 2)]!), p99: Math.round(times[Math.floor(times.length * 0.99)]!), max: Math.round(times[times.length - 1]!), runs: times.length }
  }
  console.log(JSON.stringify({ failoverSimulatedMs: out }))
  console.log('scenario (3 members, sim time)     p50 ms  p99 ms  max ms  runs')
  for (const [k, v] of Object.entries(out)) console.log(`${k.padEnd(34)} ${String(v.p50).padStart(6)}  ${String(v.p99).padStart(6)}  ${String(v.max).padStart(6)}  ${v.runs}`)
} else if (replay) {
  const seed = Number(arg('seed'))
  const nodes = Number(arg('nodes') ?? 3)
  const profile = arg('profile') ?? 'mixed'
  const sim = new Simulation({ ...profileOptions(profile, seed, nodes, quorum), trace: (l) => { console.log(l) }, traceMessages: process.argv.includes('--messages') }).setProfile(profile)
  try {
    const r = sim.run()
    console.log(JSON.stringify(r))
  } catch (err) {
    console.error(String((err as Error).message))
    process.exitCode = 1
  }
} else {
  const count = Number(arg('count') ?? 2000)
  const start = Number(arg('start') ?? 1)
  const nodesList = (arg('nodes') ?? '3,5').split(',').map(Number)
  const profiles = (arg('profile') ?? PROFILES.join(',')).split(',')
  const t0 = performance.now()
  const results: Array<SimResult & { profile: string, nodes: number }> = []
  const failures: string[] = []
  for (let i = 0; i < count; i++) {
    const seed = start + i
    const profile = profiles[i % profiles.length]!
    const nodes = nodesList[Math.floor(i / profiles.length) % nodesList.length]!
    try {
      const r = new Simulation(profileOptions(profile, seed, nodes, quorum)).setProfile(profile).run()
      results.push({ ...r, profile, nodes })
    } catch (err) {
      if (!(err instanceof SimulationFailure)) throw err
      failures.push(err.message)
      console.error(err.message)
    }
  }
  const ms = performance.now() - t0
  const pct = (xs: number[], p: number): number => {
    const s = [...xs].sort((a, b) => a - b)
    return s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.floor(p * s.length))]!
  }
  const byProfile: Record<string, { runs: number, convergeP50: number, convergeP99: number, coldStartP99?: number, events: number }> = {}
  for (const p of profiles) {
    const rs = results.filter(r => r.profile === p)
    const cold = rs.map(r => r.coldStartMs).filter((x): x is number => x !== undefined)
    byProfile[p] = {
      runs: rs.length,
      convergeP50: Math.round(pct(rs.map(r => r.convergeMs), 0.5)),
      convergeP99: Math.round(pct(rs.map(r => r.convergeMs), 0.99)),
      ...(cold.length > 0 ? { coldStartP99: Math.round(pct(cold, 0.99)) } : {}),
      events: rs.reduce((a, r) => a + r.events, 0)
    }
  }
  const summary = { schedules: count, failures: failures.length, quorum, wallMs: Math.round(ms), byProfile }
  console.log(JSON.stringify(summary))
  console.log('profile      runs  converge p50/p99 ms  cold-start p99 ms  events')
  for (const [p, s] of Object.entries(byProfile)) {
    console.log(`${p.padEnd(12)} ${String(s.runs).padStart(4)}  ${`${s.convergeP50}/${s.convergeP99}`.padStart(19)}  ${String(s.coldStartP99 ?? '-').padStart(17)}  ${s.events}`)
  }
  console.log(`${count} schedules, ${failures.length} failed, ${(ms / 1000).toFixed(1)} s`)
  if (failures.length > 0) process.exitCode = 1
}

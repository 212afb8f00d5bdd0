/**
 * The fixed set of simulation runs whose trace digests are committed in `test/fixtures/sim-digests.json`: the
 * bench's schedule (every profile, 3 and 5 members, majority quorum), some with quorum `none`, and the scripted
 * leader faults (crash, pause, partition, leave, hand-over). A run that fails an invariant records the failure
 * instead of a digest, so a change that breaks a seed shows as a changed digest too.
 */
import { fileURLToPath } from 'node:url'
import { PROFILES, Simulation, SimulationFailure, profileOptions, type ScriptedFault, type SimOptions } from './simulation.js'

export const DIGESTS_FILE = fileURLToPath(new URL('../../fixtures/sim-digests.json', import.meta.url))

export interface DigestEntry { key: string, options: SimOptions, profile: string }

const SCRIPTS: Record<string, ScriptedFault[]> = {
  'crash-leader': [{ at: 3000, action: 'crash-leader' }],
  'pause-leader': [{ at: 3000, action: 'pause-leader', ms: 8000 }],
  'partition-leader': [{ at: 3000, action: 'partition-leader', ms: 8000, kind: 'drop' }],
  'leave-leader': [{ at: 3000, action: 'leave-leader' }],
  transfer: [{ at: 3000, action: 'transfer' }]
}

/** `count` majority runs like `bench:sim`'s, then a tenth as many with quorum `none`, then 20 of each script. */
export function digestSchedule (count: number): DigestEntry[] {
  const out: DigestEntry[] = []
  for (let i = 0; i < count; i++) {
    const seed = 1 + i
    const profile = PROFILES[i % PROFILES.length]!
    const nodes = [3, 5][Math.floor(i / PROFILES.length) % 2]!
    out.push({ key: `${seed}/${nodes}/${profile}/majority`, options: profileOptions(profile, seed, nodes, 'majority'), profile })
  }
  for (let i = 0; i < Math.ceil(count / 10); i++) {
    const seed = 10_001 + i
    const profile = i % 2 === 0 ? 'mixed' : 'crash-k8s'
    const nodes = [3, 5][Math.floor(i / 2) % 2]!
    out.push({ key: `${seed}/${nodes}/${profile}/none`, options: profileOptions(profile, seed, nodes, 'none'), profile })
  }
  for (const [name, script] of Object.entries(SCRIPTS)) {
    for (let seed = 1; seed <= 20; seed++) {
      const facts = name === 'crash-leader' && seed % 2 === 0
      out.push({
        key: `${seed}/3/script:${name}${facts ? '+facts' : ''}/majority`,
        options: { seed, nodes: 3, faultMs: 0, settleBoundMs: 15_000, outsideDeathFacts: facts, script },
        profile: `script:${name}`
      })
    }
  }
  return out
}

export function runDigest (e: DigestEntry): string {
  try {
    return new Simulation(e.options).setProfile(e.profile).run().digest
  } catch (err) {
    if (!(err instanceof SimulationFailure)) throw err
    return `FAILED: ${err.message.split('\n')[0]!}`
  }
}

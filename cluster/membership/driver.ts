/**
 * Runs a membership machine: feeds it one input at a time and carries out its outputs, in order, through ports.
 * The one executor of the machine's outputs, for the daemon's cluster member, the simulation and the unit tests, so
 * that what the simulation proves is what the daemon does.
 *
 * Rules:
 * - The persisted state is written before any other output of the step (the machine puts it first). If writing it
 *   fails, the step's other outputs are dropped: nothing acts on state that is not durable.
 * - A failure (the state cannot be written, or the machine throws: a bug) is final: the driver takes no more input
 *   and this member never leads again in this process. A machine in an unknown state must not act, least of all as
 *   leader; the member stops answering, the others exclude it, and its health check makes the orchestrator restart it.
 */
import type { ReplyMessage } from '../messages.js'
import type { MembershipMachine } from './machine.js'
import type { MembershipEvent, MembershipInput, MembershipOutput, PersistedClusterState } from './types.js'

export type SendOutput = Extract<MembershipOutput, { type: 'send' }>
export type LogOutput = Extract<MembershipOutput, { type: 'log' }>

export interface DriverPorts {
  /** Writes the state durably, synchronously; throws if it cannot. */
  persist: (state: PersistedClusterState) => void
  /** Sends a request; its result comes back as a `send-result` input with the same id. */
  send: (o: SendOutput) => void
  event: (e: MembershipEvent) => void
  log: (o: LogOutput) => void
  /** The driver failed (see the module comment); called once. */
  failed?: (err: Error, cause: 'persist' | 'machine') => void
  /** Every step, before its outputs are carried out (the simulation's trace digest and checks). */
  observe?: (input: MembershipInput, now: number, outputs: MembershipOutput[]) => void
}

export class MembershipDriver {
  private failure: Error | undefined

  constructor (readonly machine: MembershipMachine, private readonly ports: DriverPorts) {}

  /** Why this driver stopped, if it did. */
  get failed (): Error | undefined { return this.failure }

  /** Feeds one input; returns the reply when the input was a request. Nothing happens once failed. */
  step (input: MembershipInput, now: number): ReplyMessage | undefined {
    if (this.failure !== undefined) return undefined
    let outputs: MembershipOutput[]
    try {
      outputs = this.machine.handle(input, now)
    } catch (err) {
      this.fail(err, 'machine')
      return undefined
    }
    this.ports.observe?.(input, now, outputs)
    let reply: ReplyMessage | undefined
    for (const o of outputs) {
      switch (o.type) {
        case 'persist':
          try {
            this.ports.persist(o.state)
          } catch (err) {
            this.fail(err, 'persist')
            return undefined
          }
          break
        case 'send': this.ports.send(o); break
        case 'reply': reply = o.msg; break
        case 'event': this.ports.event(o.event); break
        case 'log': this.ports.log(o); break
      }
    }
    return reply
  }

  /** Leads only while the machine holds a lease and the driver has not failed. */
  isLeader (now: number): boolean { return this.failure === undefined && this.machine.isLeader(now) }
  leaseRemaining (now: number): number { return this.failure === undefined ? this.machine.leaseRemaining(now) : 0 }

  private fail (err: unknown, cause: 'persist' | 'machine'): void {
    this.failure = err instanceof Error ? err : new Error(String(err))
    this.ports.failed?.(this.failure, cause)
  }
}

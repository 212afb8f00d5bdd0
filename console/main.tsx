/**
 * The web console (issue 15): one page per member, served by that member at `/` behind the API's Basic
 * credentials. It reads this member's API only (same origin) and follows its events WebSocket: each cluster event
 * re-reads the status (events carry no heartbeat ages, labels or journal positions), each transfer event updates
 * the live transfers and the throughput. Nothing here is secret: the credentials stay in the browser's cache.
 */
import { render } from 'preact'
import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks'
import { ApiError, eventsUrl, getStatus, getTransfer, getTransfers, handOver, type ClusterEvent, type LiveTransfer, type Status, type Transfer } from './api.js'
import { ThroughputChart } from './chart.js'
import './console.css'

/** Timeline entries kept, newest first. */
const TIMELINE_MAX = 200
/** Throughput window shown, seconds, in buckets of BUCKET_S. */
const WINDOW_S = 300
const BUCKET_S = 5
/** The status is re-read on every event and, for the heartbeat ages, at this pace otherwise. */
const STATUS_REFRESH_MS = 5000
const PAGE_SIZE = 20

const bytesFmt = (n: number): string => n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : n < 1024 ** 3 ? `${(n / 1024 ** 2).toFixed(1)} MiB` : `${(n / 1024 ** 3).toFixed(2)} GiB`
const timeFmt = (iso: string): string => new Date(iso).toLocaleTimeString(undefined, { hour12: false })
const dateTimeFmt = (iso: string | null): string => iso === null ? '—' : new Date(iso).toLocaleString(undefined, { hour12: false })
const yesNo = (b: boolean | null): string => b === null ? 'unknown' : b ? 'yes' : 'no'

interface TimelineEntry { key: number, type: string, at: string, leader: string | null, epoch: number | null, viewId: number | null, members: number | null }

type StreamState = { state: 'connecting' } | { state: 'live', since: string } | { state: 'down', reason: string }

/** Bytes seen per transfer (to count what each event adds) and the per-bucket totals of the window. */
class Throughput {
  private readonly last = new Map<string, number>()
  private readonly buckets = new Map<number, number>()

  note (t: Transfer): void {
    const before = this.last.get(t.id)
    if (t.status === 'in-progress') this.last.set(t.id, t.bytes)
    else this.last.delete(t.id)
    // A transfer first seen mid-way counts from then on: its earlier bytes were not received in this window.
    if (before === undefined || t.bytes <= before) return
    const b = Math.floor(Date.now() / 1000 / BUCKET_S) * BUCKET_S
    this.buckets.set(b, (this.buckets.get(b) ?? 0) + t.bytes - before)
  }

  /** [times (s), bytes per second] over the window, one point per bucket, up to now. */
  series (): [number[], number[]] {
    const now = Math.floor(Date.now() / 1000 / BUCKET_S) * BUCKET_S
    const xs: number[] = []
    const ys: number[] = []
    for (let b = now - WINDOW_S; b <= now; b += BUCKET_S) {
      xs.push(b)
      ys.push((this.buckets.get(b) ?? 0) / BUCKET_S)
    }
    for (const k of this.buckets.keys()) if (k < now - WINDOW_S) this.buckets.delete(k)
    return [xs, ys]
  }
}

function App () {
  const [status, setStatus] = useState<Status | undefined>(undefined)
  const [statusError, setStatusError] = useState<string | undefined>(undefined)
  const [timeline, setTimeline] = useState<TimelineEntry[]>([])
  const [stream, setStream] = useState<StreamState>({ state: 'connecting' })
  const [live, setLive] = useState<Map<string, LiveTransfer>>(new Map())
  const [journalTick, setJournalTick] = useState(0)
  const throughput = useMemo(() => new Throughput(), [])
  const rates = useRef(new Map<string, { at: number, bytes: number, rate: number }>())
  // The journal's page is read again at most once a second, however many transfers end meanwhile.
  const journalTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined)
  const rereadJournal = useCallback(() => {
    if (journalTimer.current !== undefined) return
    journalTimer.current = setTimeout(() => { journalTimer.current = undefined; setJournalTick((n) => n + 1) }, 1000)
  }, [])
  /** Transfers the stream said ended: a list of rows in progress read before that must not bring them back. */
  const ended = useRef(new Set<string>())

  const refreshStatus = useCallback(async () => {
    try {
      setStatus(await getStatus())
      setStatusError(undefined)
    } catch (err) {
      setStatusError(err instanceof ApiError ? `${err.status}: ${err.message}` : String(err))
    }
  }, [])

  useEffect(() => {
    void refreshStatus()
    const timer = setInterval(() => { void refreshStatus() }, STATUS_REFRESH_MS)
    return () => { clearInterval(timer) }
  }, [refreshStatus])

  // The rows in progress when the stream (re)connects; its transfer events update them from then on. The list
  // replaces what was shown: a transfer that ended while the stream was down sent its end to no one. A row whose
  // event arrived after the list was asked for is newer than the list and stays, as does one shown with live figures
  // ahead of the same journal entry (the list holds the last sync point).
  const loadInProgress = useCallback(() => {
    const askedAt = Date.now()
    getTransfers({ status: 'in-progress', limit: 100 }).then((p) => {
      setLive((m) => {
        const next = new Map<string, LiveTransfer>()
        for (const t of p.transfers) {
          if (ended.current.has(t.id)) continue
          const shown = m.get(t.id)
          next.set(t.id, shown !== undefined && shown.seq >= t.seq ? shown : t)
          throughput.note(t)
        }
        for (const [id, t] of m) if (!next.has(id) && (rates.current.get(id)?.at ?? 0) > askedAt) next.set(id, t)
        return next
      })
      rereadJournal()
    }, () => {})
  }, [throughput, rereadJournal])

  useEffect(() => {
    let ws: WebSocket | undefined
    let retry: ReturnType<typeof setTimeout> | undefined
    let delay = 500
    let closed = false
    let seq = 0
    const connect = (): void => {
      setStream({ state: 'connecting' })
      ws = new WebSocket(eventsUrl())
      ws.onopen = () => {
        delay = 500
        setStream({ state: 'live', since: new Date().toISOString() })
      }
      ws.onmessage = (m: MessageEvent<string>) => {
        let e: ClusterEvent
        try {
          e = JSON.parse(m.data) as ClusterEvent
        } catch {
          return
        }
        if (e.type === 'transfer' && e.transfer !== undefined) {
          const t = e.transfer
          throughput.note(t)
          const prev = rates.current.get(t.id)
          const now = Date.now()
          const rate = prev !== undefined && now > prev.at ? Math.max(0, (t.bytes - prev.bytes) * 1000 / (now - prev.at)) : 0
          rates.current.set(t.id, { at: now, bytes: t.bytes, rate: prev !== undefined && t.bytes === prev.bytes ? prev.rate : rate })
          setLive((old) => {
            const next = new Map(old)
            if (t.status === 'in-progress') next.set(t.id, t)
            else next.delete(t.id)
            return next
          })
          if (t.status !== 'in-progress') {
            rates.current.delete(t.id)
            ended.current.add(t.id)
            if (ended.current.size > 1000) ended.current.delete(ended.current.values().next().value!)
            rereadJournal()
          }
          return
        }
        if (e.type === 'state') loadInProgress()
        const entry: TimelineEntry = {
          key: seq++,
          type: e.type,
          at: e.at,
          leader: e.leader ?? null,
          epoch: e.epoch ?? null,
          viewId: e.viewId?.id ?? null,
          members: e.members?.length ?? null
        }
        setTimeline((old) => [entry, ...old].slice(0, TIMELINE_MAX))
        void refreshStatus()
      }
      ws.onclose = (ev: CloseEvent) => {
        if (closed) return
        setStream({ state: 'down', reason: ev.reason !== '' ? ev.reason : `closed (${ev.code}); reconnecting` })
        retry = setTimeout(connect, delay)
        delay = Math.min(delay * 2, 10_000)
      }
    }
    connect()
    return () => {
      closed = true
      if (retry !== undefined) clearTimeout(retry)
      ws?.close()
    }
  }, [refreshStatus, loadInProgress, throughput, rereadJournal])

  return (
    <>
      <header class="top">
        <h1>Vectis console</h1>
        <p class="who">
          {status === undefined ? 'loading…' : <>cluster <strong>{status.clusterName}</strong>, served by member <strong>{status.nodeName}</strong></>}
          {' · '}
          <span class={`stream stream-${stream.state}`} role="status">
            {stream.state === 'live' ? 'live' : stream.state === 'connecting' ? 'connecting to the event stream…' : `event stream down: ${stream.reason}`}
          </span>
        </p>
        <nav aria-label="Views">
          <a href="#cluster">Cluster</a> <a href="#transfers">Transfers</a> <a href="#servers">PeSIT servers</a>
        </nav>
      </header>
      <main>
        {statusError !== undefined && <p class="error" role="alert">Cannot read the status: {statusError}</p>}
        <ClusterView status={status} timeline={timeline} onChanged={refreshStatus} />
        <TransfersView live={live} rates={rates.current} tick={journalTick} />
        <ServersView status={status} throughput={throughput} />
      </main>
    </>
  )
}

function ClusterView (p: { status: Status | undefined, timeline: TimelineEntry[], onChanged: () => Promise<void> }) {
  const s = p.status
  const leaderSeq = s?.members.find((m) => m.name === s.leader)?.journalSeq ?? null
  return (
    <section id="cluster" aria-labelledby="cluster-h">
      <h2 id="cluster-h">Cluster</h2>
      {s === undefined
        ? <p>Loading the status…</p>
        : (
          <>
            <dl class="summary">
              <div><dt>Leader</dt><dd id="leader" aria-live="polite">{s.leader ?? 'none known'}</dd></div>
              <div><dt>Epoch</dt><dd>{s.epoch}</dd></div>
              <div><dt>View</dt><dd>{s.viewId === null ? 'none' : `${s.viewId.coordinator} #${s.viewId.id}`}</dd></div>
              <div><dt>Quorum</dt><dd>{s.quorum.present} present of {s.quorum.required} required: {s.quorum.ok ? 'ok' : 'lost'}</dd></div>
              <div><dt>Journal here</dt><dd>seq {s.journal.seq}, lag {s.journal.lagEntries}</dd></div>
            </dl>
            <table id="members">
              <caption>Members in view order (coordinator first), as {s.nodeName} sees them</caption>
              <thead>
                <tr><th scope="col">Member</th><th scope="col">Role</th><th scope="col">Address</th><th scope="col">Heartbeat age</th><th scope="col">Leader label</th><th scope="col">Journal seq</th><th scope="col">Lag</th></tr>
              </thead>
              <tbody>
                {s.members.map((m) => {
                  const role = m.name === s.leader ? 'leader' : 'standby'
                  return (
                    <tr key={m.name} data-member={m.name} class={role}>
                      <th scope="row">{m.name}{m.name === s.nodeName ? ' (this member)' : ''}</th>
                      <td class="role">{role}</td>
                      <td>{m.address}</td>
                      <td>{m.heartbeatAgeMs === null ? '—' : `${Math.round(m.heartbeatAgeMs)} ms`}</td>
                      <td>{yesNo(m.labelled)}</td>
                      <td>{m.journalSeq ?? '—'}</td>
                      <td>{m.journalSeq === null || leaderSeq === null ? '—' : Math.max(0, leaderSeq - m.journalSeq)}</td>
                    </tr>
                  )
                })}
              </tbody>
            </table>
            <HandOver status={s} onDone={p.onChanged} />
          </>
          )}
      <h3>Events</h3>
      {p.timeline.length === 0
        ? <p>No events yet.</p>
        : (
          <ol class="timeline" aria-label="Cluster events, newest first">
            {p.timeline.map((e) => (
              <li key={e.key}>
                <time dateTime={e.at}>{timeFmt(e.at)}</time> <strong>{e.type}</strong>
                {e.leader !== null ? ` leader ${e.leader}` : ' no leader'}
                {e.epoch !== null ? `, epoch ${e.epoch}` : ''}{e.viewId !== null ? `, view #${e.viewId}` : ''}{e.members !== null ? `, ${e.members} members` : ''}
              </li>
            ))}
          </ol>
          )}
    </section>
  )
}

/** The one action: a hand-over, asked of the leader (a standby's console links to the leader's). */
function HandOver (p: { status: Status, onDone: () => Promise<void> }) {
  const s = p.status
  const dialog = useRef<HTMLDialogElement>(null)
  const [to, setTo] = useState('')
  const [result, setResult] = useState<string | undefined>(undefined)
  const [busy, setBusy] = useState(false)
  const others = s.members.filter((m) => m.name !== s.nodeName)
  if (!s.isLeader) {
    const leader = s.members.find((m) => m.name === s.leader)
    return (
      <div class="handover">
        {result !== undefined && <p role="status">{result}</p>}
        <p class="note">
          Leadership is handed over by the leader.{' '}
          {leader !== undefined ? <>Open <a href={`${location.protocol}//${leader.address.includes(':') ? `[${leader.address}]` : leader.address}${location.port === '' ? '' : `:${location.port}`}/`}>{leader.name}'s console</a> to do it.</> : 'No leader is known now.'}
        </p>
      </div>
    )
  }
  const confirm = async (): Promise<void> => {
    setBusy(true)
    try {
      const r = await handOver(to === '' ? undefined : to)
      setResult(`Leadership handed over from ${r.from} to ${r.to}.`)
    } catch (err) {
      setResult(`Hand-over refused: ${err instanceof Error ? err.message : String(err)}`)
    } finally {
      setBusy(false)
      dialog.current?.close()
      await p.onDone()
    }
  }
  return (
    <div class="handover">
      <label for="handover-to">Hand leadership over to</label>{' '}
      <select id="handover-to" value={to} onChange={(e) => { setTo(e.currentTarget.value) }}>
        <option value="">the next oldest member</option>
        {others.map((m) => <option key={m.name} value={m.name}>{m.name}</option>)}
      </select>{' '}
      <button type="button" disabled={others.length === 0} onClick={() => { setResult(undefined); dialog.current?.showModal() }}>Hand over…</button>
      {result !== undefined && <p role="status">{result}</p>}
      <dialog ref={dialog} aria-labelledby="handover-h">
        <h3 id="handover-h">Hand leadership over?</h3>
        <p>{s.nodeName} stops taking PeSIT sessions, interrupts live transfers at their next sync point and passes the lease to {to === '' ? 'the next oldest member' : to}. Partners reconnect through the load balancer.</p>
        <div class="buttons">
          <button type="button" disabled={busy} onClick={() => { void confirm() }}>Hand over</button>{' '}
          <button type="button" autofocus onClick={() => { dialog.current?.close() }}>Cancel</button>
        </div>
      </dialog>
    </div>
  )
}

function TransfersView (p: { live: Map<string, LiveTransfer>, rates: Map<string, { rate: number }>, tick: number }) {
  const [filter, setFilter] = useState({ status: '', partner: '' })
  const [draft, setDraft] = useState({ status: '', partner: '' })
  const [cursors, setCursors] = useState<string[]>([])
  const [page, setPage] = useState<{ rows: Transfer[], next: string | null } | undefined>(undefined)
  const [error, setError] = useState<string | undefined>(undefined)
  const [detail, setDetail] = useState<Transfer | string | undefined>(undefined)
  const before = cursors[cursors.length - 1]

  useEffect(() => {
    let stale = false
    getTransfers({ ...filter, limit: PAGE_SIZE, ...(before !== undefined ? { before } : {}) }).then((r) => {
      if (stale) return
      setPage({ rows: r.transfers, next: r.next })
      setError(undefined)
    }, (err: unknown) => { if (!stale) setError(err instanceof Error ? err.message : String(err)) })
    return () => { stale = true }
    // The first page follows the stream (a transfer that ends); older pages stay as read.
  }, [filter, before, before === undefined ? p.tick : 0])

  const open = async (id: string): Promise<void> => {
    try {
      setDetail(await getTransfer(id))
    } catch (err) {
      setDetail(`Cannot read transfer ${id}: ${err instanceof Error ? err.message : String(err)}`)
    }
  }
  const running = [...p.live.values()].filter((t) => t.status === 'in-progress')
  return (
    <section id="transfers" aria-labelledby="transfers-h">
      <h2 id="transfers-h">Transfers</h2>
      <h3>In progress</h3>
      {running.length === 0
        ? <p id="in-progress-none">None now.</p>
        : (
          <table id="in-progress">
            <caption>Transfers in progress (live from the leader; the size is the one the requester announced, in whole KB)</caption>
            <thead><tr><th scope="col">Transfer</th><th scope="col">Partner</th><th scope="col">Virtual file</th><th scope="col">Progress</th><th scope="col">Bytes</th><th scope="col">Rate</th><th scope="col">Last sync point</th></tr></thead>
            <tbody>
              {running.map((t) => (
                <tr key={t.id} data-transfer={t.id}>
                  <th scope="row">{t.id}</th>
                  <td>{t.partner}</td>
                  <td>{t.virtualFile}</td>
                  <td><ProgressBar t={t} /></td>
                  <td class="bytes">{bytesFmt(t.bytes)}</td>
                  <td>{bytesFmt(Math.round(p.rates.get(t.id)?.rate ?? 0))}/s</td>
                  <td>{t.syncPoint} at {bytesFmt(t.syncOffset)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          )}
      <h3>Journal</h3>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); setCursors([]); setFilter({ ...draft }) }}>
        <label for="f-status">Status</label>{' '}
        <select id="f-status" value={draft.status} onChange={(e) => { setDraft({ ...draft, status: e.currentTarget.value }) }}>
          <option value="">any</option>
          <option value="queued">queued</option>
          <option value="in-progress">in progress</option>
          <option value="completed">completed</option>
          <option value="interrupted">interrupted</option>
          <option value="failed">failed</option>
          <option value="cancelled">cancelled</option>
          <option value="unconfirmed">unconfirmed</option>
        </select>{' '}
        <label for="f-partner">Partner</label>{' '}
        <input id="f-partner" type="text" maxLength={64} value={draft.partner} onInput={(e) => { setDraft({ ...draft, partner: e.currentTarget.value }) }} />{' '}
        <button type="submit">Filter</button>
      </form>
      {error !== undefined && <p class="error" role="alert">Cannot read the journal: {error}</p>}
      {page !== undefined && (
        <>
          <table id="journal">
            <caption>Journal, newest first{before !== undefined ? `, after ${before}` : ''}</caption>
            <thead><tr><th scope="col">Transfer</th><th scope="col">Created</th><th scope="col">Partner</th><th scope="col">Virtual file</th><th scope="col">Direction</th><th scope="col">Status</th><th scope="col">Bytes</th><th scope="col">Diagnostic</th></tr></thead>
            <tbody>
              {page.rows.length === 0 && <tr><td colSpan={8}>No transfers.</td></tr>}
              {page.rows.map((t) => (
                <tr key={t.id} data-transfer={t.id} data-status={t.status}>
                  <th scope="row"><button type="button" class="link" onClick={() => { void open(t.id) }} aria-label={`Details of transfer ${t.id}`}>{t.id}</button></th>
                  <td>{dateTimeFmt(t.createdAt)}</td>
                  <td>{t.partner}</td>
                  <td>{t.virtualFile}</td>
                  <td>{directionOf(t)}</td>
                  <td class={`status status-${t.status}`}>{t.status}</td>
                  <td>{bytesFmt(t.bytes)}</td>
                  <td>{t.diagnostic ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <div class="paging">
            <button type="button" disabled={cursors.length === 0} onClick={() => { setCursors(cursors.slice(0, -1)) }}>Newer</button>{' '}
            <button type="button" disabled={page.next === null} onClick={() => { if (page.next !== null) setCursors([...cursors, page.next]) }}>Older</button>
          </div>
        </>
      )}
      {detail !== undefined && <TransferDetail detail={detail} onClose={() => { setDetail(undefined) }} />}
    </section>
  )
}

/** From this cluster's side: a partner's push is received, a pull sent; the cluster's own queue sends and fetches. */
function directionOf (t: Transfer): string {
  if (t.initiator === 'cluster') return t.direction === 'send' ? 'send (queued by the cluster)' : 'fetch (queued by the cluster)'
  return t.direction
}

/** Determinate when the file's size is known (bytes never shown past it: an announced size is rounded up to a KB). */
function ProgressBar ({ t }: { t: LiveTransfer }) {
  const done = t.direction === 'send' ? 'sent' : 'received'
  if (t.expectedBytes === undefined || t.expectedBytes === 0) return <progress aria-label={`${t.id}: ${bytesFmt(t.bytes)} ${done} so far, size unknown`} />
  const value = Math.min(t.bytes, t.expectedBytes)
  return <progress max={t.expectedBytes} value={value} aria-label={`${t.id}: ${bytesFmt(t.bytes)} of ${bytesFmt(t.expectedBytes)} ${done} (${Math.floor(100 * value / t.expectedBytes)} %)`} />
}

function TransferDetail (p: { detail: Transfer | string, onClose: () => void }) {
  const heading = useRef<HTMLHeadingElement>(null)
  useEffect(() => { heading.current?.focus() }, [p.detail])
  const t = p.detail
  return (
    <section class="detail" aria-labelledby="detail-h">
      <h3 id="detail-h" tabIndex={-1} ref={heading}>{typeof t === 'string' ? 'Transfer' : `Transfer ${t.id}`}</h3>
      {typeof t === 'string'
        ? <p class="error">{t}</p>
        : (
          <dl>
            {t.diagnostic !== null && <div class="diagnostic"><dt>Diagnostic</dt><dd>{t.diagnostic}</dd></div>}
            <div><dt>Status</dt><dd>{t.status}</dd></div>
            <div><dt>PeSIT transfer id</dt><dd>{t.transferId}</dd></div>
            <div><dt>Server, partner, file</dt><dd>{t.server}, {t.partner}, {t.virtualFile} ({directionOf(t)})</dd></div>
            {t.initiator === 'cluster' && <div><dt>Attempts</dt><dd>{t.attempts}{t.nextAttemptAt !== null ? `, next not before ${dateTimeFmt(t.nextAttemptAt)}` : ''}</dd></div>}
            <div><dt>Bytes</dt><dd>{t.bytes} ({bytesFmt(t.bytes)})</dd></div>
            <div><dt>Last sync point</dt><dd>{t.syncPoint} at offset {t.syncOffset}</dd></div>
            <div><dt>Member, epoch</dt><dd>{t.member}, epoch {t.epoch}</dd></div>
            <div><dt>Created, updated, finished</dt><dd>{dateTimeFmt(t.createdAt)}, {dateTimeFmt(t.updatedAt)}, {dateTimeFmt(t.finishedAt)}</dd></div>
            <div><dt>File</dt><dd>{t.filePath ?? '—'}</dd></div>
            <div><dt>SHA-256</dt><dd class="mono">{t.sha256 ?? '—'}</dd></div>
          </dl>
          )}
      <button type="button" onClick={p.onClose}>Close</button>
    </section>
  )
}

function ServersView (p: { status: Status | undefined, throughput: Throughput }) {
  const s = p.status
  return (
    <section id="servers" aria-labelledby="servers-h">
      <h2 id="servers-h">PeSIT servers</h2>
      {s !== undefined && (
        <table id="pesit-servers">
          <caption>On {s.nodeName}{s.isLeader ? ' (the leader: it runs them)' : ' (a standby: only the leader runs them)'}</caption>
          <thead><tr><th scope="col">Server</th><th scope="col">Port</th><th scope="col">TLS</th><th scope="col">Running</th><th scope="col">Active connections</th></tr></thead>
          <tbody>
            {s.servers.map((v) => (
              <tr key={`${v.id}:${v.port}`}>
                <th scope="row">{v.id}</th><td>{v.port}</td><td>{v.tls ? 'yes' : 'no'}</td><td>{v.running ? 'yes' : 'no'}</td><td>{v.connections}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3 id="throughput-h">Throughput, last {WINDOW_S / 60} minutes</h3>
      <p class="note">Bytes received per second in {BUCKET_S}-second steps, counted from the transfers' sync points since this page opened.</p>
      <ThroughputChart series={() => p.throughput.series()} labelledBy="throughput-h" />
    </section>
  )
}

const root = document.getElementById('app')
if (root !== null) render(<App />, root)
